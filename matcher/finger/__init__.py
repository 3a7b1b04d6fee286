"""Fingerprint matching: MCC cylinders (``descriptors``), the Cython minutiae matcher (``matching``),
the two-stage 1:N index (``index``), ISO/IEC 19794-2 records (``iso19794``) and the modality
(``modality``) that galleries use."""
