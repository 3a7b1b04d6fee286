"""ANSI/NIST-ITL transactions (the format of FBI EBTS, Interpol and every AFIS) read into samples.

``reader.read_transaction`` turns one transaction into the samples of one subject — finger
images (Type-4, Type-14), face images (Type-10), finger minutiae (Type-9 INCITS 378 blocks) — and
the subject's metadata (Type-1, Type-2, through ``mapping``); ``payloads`` turns each record's
image into bytes our decoders take.  Parsing is ``nistitl``'s; it checks almost no field, so the
field checks are ours, and every refusal names the record and the field.
"""
