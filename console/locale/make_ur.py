"""Write ``ur/LC_MESSAGES/console.po`` from ``console.pot`` and the Urdu below (run after ``pybabel extract``).

Kept as a table in code so that a missing translation fails ``tests/console/test_i18n.py`` by name.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).parent

URDU = {
    "investigator": "تفتیشی افسر", "supervisor": "نگران افسر", "intake": "داخلہ", "oversight": "نگرانی", "admin": "منتظم",
    "checkpoint": "چیک پوائنٹ", "face": "چہرہ", "finger": "انگلی", "pending": "زیر التوا",
    "awaiting verification": "تصدیق کا منتظر", "confirmed identification": "تصدیق شدہ شناخت", "excluded": "خارج",
    "inconclusive": "غیر حتمی", "disputed": "متنازع",
    "Your session ended after a period without use; please sign in again.": "کچھ دیر استعمال نہ ہونے پر آپ کا سیشن ختم ہو گیا؛ براہ کرم دوبارہ سائن ان کریں۔",
    "Your role (%(role)s) does not use this page.": "آپ کا کردار (%(role)s) یہ صفحہ استعمال نہیں کرتا۔",
    "The form was refused: its security token was missing or wrong. Nothing was changed; reload the page and try again.":
        "فارم مسترد کر دیا گیا: اس کا حفاظتی ٹوکن موجود نہیں تھا یا غلط تھا۔ کچھ تبدیل نہیں ہوا؛ صفحہ دوبارہ لوڈ کر کے پھر کوشش کریں۔",
    "The server ended your session; please sign in again.": "سرور نے آپ کا سیشن ختم کر دیا؛ براہ کرم دوبارہ سائن ان کریں۔",
    "The server refused the request: %(reason)s": "سرور نے درخواست مسترد کر دی: %(reason)s",
    "Enter your user name and password.": "اپنا صارف نام اور پاس ورڈ درج کریں۔",
    "This account is locked after repeated failed sign-ins: %(reason)s": "بار بار ناکام سائن ان کے بعد یہ اکاؤنٹ مقفل ہے: %(reason)s",
    "Unknown user or wrong password.": "نامعلوم صارف یا غلط پاس ورڈ۔",
    "The console is for people. %(role)s accounts are for systems such as hotel and checkpoint cameras; they call the service directly.":
        "کنسول انسانوں کے لیے ہے۔ %(role)s اکاؤنٹ ہوٹل اور چیک پوائنٹ کیمروں جیسے نظاموں کے لیے ہیں؛ وہ سروس کو براہ راست استعمال کرتے ہیں۔",
    "You are signed out.": "آپ سائن آؤٹ ہو گئے ہیں۔",
    "“%(file)s” is empty.": "“%(file)s” خالی ہے۔",
    "“%(file)s” is not an image (JPEG, PNG, BMP, TIFF, WebP, PGM or WSQ).": "“%(file)s” تصویر نہیں ہے (JPEG، PNG، BMP، TIFF، WebP، PGM یا WSQ)۔",
    "Choose the finger position (1–10) of “%(file)s”.": "“%(file)s” کی انگلی کا مقام (1–10) منتخب کریں۔",
    "The images are too large together (at most %(mb)d MB).": "تصاویر مل کر بہت بڑی ہیں (زیادہ سے زیادہ %(mb)d MB)۔",
    "Choose a face photo or at least one finger image.": "چہرے کی تصویر یا کم از کم ایک انگلی کی تصویر منتخب کریں۔",
    "State the purpose of this search (FIR or case number); nothing was searched.": "اس تلاش کا مقصد (ایف آئی آر یا مقدمہ نمبر) درج کریں؛ کچھ تلاش نہیں کیا گیا۔",
    "Choose at least one gallery to search.": "تلاش کے لیے کم از کم ایک گیلری منتخب کریں۔",
    "This search cannot be shown.": "یہ تلاش دکھائی نہیں جا سکتی۔",
    "Choose identification, exclusion or inconclusive, and give a reason; nothing was recorded.":
        "شناخت، اخراج یا غیر حتمی میں سے ایک منتخب کریں اور وجہ لکھیں؛ کچھ درج نہیں ہوا۔",
    "The decision was not recorded: %(reason)s": "فیصلہ درج نہیں ہوا: %(reason)s",
    "Decision recorded.": "فیصلہ درج ہو گیا۔",
    "Enter the inmate's number (subject id).": "قیدی کا نمبر (شناختی نمبر) درج کریں۔",
    "The oversight report cannot be shown.": "نگرانی کی رپورٹ دکھائی نہیں جا سکتی۔",
    "Scores of confirmed identifications": "تصدیق شدہ شناختوں کے اسکور",
    "Scores of excluded candidates": "خارج کیے گئے امیدواروں کے اسکور",
    "hit": "مطابقت", "Score": "اسکور", "FPIR at this gallery size": "اس گیلری کے حجم پر FPIR",
    "Identification": "شناخت", "Exclusion": "اخراج", "Inconclusive": "غیر حتمی", "Reason": "وجہ", "Record decision": "فیصلہ درج کریں",
    "Images": "تصاویر", "Face photo": "چہرے کی تصویر", "Finger image": "انگلی کی تصویر", "Position": "مقام",
    "right thumb": "دایاں انگوٹھا", "right index": "دائیں شہادت کی انگلی", "right middle": "دائیں درمیانی انگلی",
    "right ring": "دائیں انگوٹھی والی انگلی", "right little": "دائیں چھنگلی", "left thumb": "بایاں انگوٹھا",
    "left index": "بائیں شہادت کی انگلی", "left middle": "بائیں درمیانی انگلی", "left ring": "بائیں انگوٹھی والی انگلی",
    "left little": "بائیں چھنگلی",
    "Shanakht console": "شناخت کنسول", "Search": "تلاش", "My searches": "میری تلاشیں", "Verify queue": "تصدیق کی قطار",
    "Intake": "داخلہ", "Oversight": "نگرانی", "Sign out": "سائن آؤٹ", "Prison intake": "جیل میں داخلہ",
    "Enrol a new inmate": "نئے قیدی کا اندراج", "Inmate number (subject id)": "قیدی نمبر (شناختی نمبر)", "Name": "نام",
    "Gallery": "گیلری", "The enrolment checks the gallery for the same person under another number.":
        "اندراج گیلری میں دیکھتا ہے کہ یہی شخص کسی اور نمبر سے تو درج نہیں۔",
    "Enrol": "اندراج کریں", "Enrolled %(subject)s: %(n)s templates stored.": "%(subject)s درج ہو گیا: %(n)s سانچے محفوظ ہوئے۔",
    "Possible duplicates": "ممکنہ دہرے اندراج", "new": "نیا", "No possible duplicates.": "کوئی ممکنہ دہرا اندراج نہیں۔",
    "Verify an inmate (1:1)": "قیدی کی تصدیق (1:1)", "Verify": "تصدیق کریں", "Match": "مطابقت", "No match": "عدم مطابقت",
    "score": "اسکور", "threshold": "حد",
    "What the system was used for and how often its hits were right. Counts and rates only: no image and no name.":
        "نظام کس مقصد کے لیے استعمال ہوا اور اس کی مطابقتیں کتنی بار درست نکلیں۔ صرف تعداد اور شرحیں: نہ کوئی تصویر، نہ کوئی نام۔",
    "From": "سے", "Until": "تک", "Show": "دکھائیں", "Export CSV": "CSV برآمد کریں", "searches": "تلاشیں", "hit rate": "مطابقت کی شرح",
    "confirmed identifications": "تصدیق شدہ شناختیں", "exclusions": "اخراج", "Hits excluded by examiners": "معائنہ کاروں کی خارج کردہ مطابقتیں",
    "nominal false-match rate of those hits": "ان مطابقتوں کی متوقع غلط مطابقت کی شرح", "Audit chain": "آڈٹ زنجیر",
    "intact": "درست", "BROKEN": "ٹوٹی ہوئی", "%(n)s records checked": "%(n)s ریکارڈ جانچے گئے",
    "Searches by week, purpose, role and gallery": "ہفتہ، مقصد، کردار اور گیلری کے لحاظ سے تلاشیں", "Week": "ہفتہ",
    "Purpose": "مقصد", "Role": "کردار", "Searches": "تلاشیں", "With hits": "مطابقت والی", "Identifications": "شناختیں",
    "Exclusions": "اخراج", "No searches in this period.": "اس مدت میں کوئی تلاش نہیں۔",
    "Candidates another examiner identified, awaiting your independent decision. Their decision is not shown until you have made yours.":
        "وہ امیدوار جنہیں کسی دوسرے معائنہ کار نے شناخت کیا، آپ کے آزادانہ فیصلے کے منتظر ہیں۔ آپ کے فیصلے سے پہلے ان کا فیصلہ نہیں دکھایا جاتا۔",
    "Nothing awaits your verification.": "آپ کی تصدیق کے لیے کچھ باقی نہیں۔", "Probe": "زیر تفتیش تصویر", "Enrolled image": "درج شدہ تصویر",
    "Refused": "مسترد", "Back to the console": "کنسول پر واپس", "Candidates": "امیدوار",
    "compared with %(n)s people": "%(n)s افراد سے موازنہ", "No candidates.": "کوئی امیدوار نہیں۔", "Identity search": "شناخت کی تلاش",
    "Purpose (FIR or case number, required)": "مقصد (ایف آئی آر یا مقدمہ نمبر، لازمی)", "Galleries": "گیلریاں",
    "Search record": "تلاش کا ریکارڈ", "galleries": "گیلریاں", "Status": "حیثیت", "Search records": "تلاش کے ریکارڈ",
    "Only mine": "صرف میری", "Everyone's": "سب کی", "When": "کب", "Examiner": "معائنہ کار", "No searches yet.": "ابھی کوئی تلاش نہیں۔",
    "Sign in": "سائن ان",
    "For investigators, supervisors, prison intake officers and oversight bodies. Every search and decision is recorded in the audit log.":
        "تفتیشی افسران، نگران افسران، جیل کے داخلہ افسران اور نگرانی کے اداروں کے لیے۔ ہر تلاش اور فیصلہ آڈٹ لاگ میں درج ہوتا ہے۔",
    "User name": "صارف نام", "Password": "پاس ورڈ",
}


def main() -> None:
    with (HERE / "console.pot").open("rb") as handle:
        template = read_po(handle)
    catalog = Catalog(locale="ur", domain="console", project="Shanakht console", version="0.1", charset="utf-8", fuzzy=False,
                      copyright_holder="Shanakht contributors", last_translator="Shanakht contributors")
    missing = []
    for message in template:
        if not message.id:
            continue
        if message.id not in URDU:
            missing.append(message.id)
        catalog.add(message.id, URDU.get(message.id, ""))
    target = HERE / "ur" / "LC_MESSAGES" / "console.po"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        write_po(handle, catalog, omit_header=False, width=120, no_location=True)
    if missing:
        raise SystemExit(f"no Urdu for: {missing}")


if __name__ == "__main__":
    main()
