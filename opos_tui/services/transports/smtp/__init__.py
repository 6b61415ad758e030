"""The SMTP transport: ``transport`` (the session on aiosmtplib), ``errors`` (what can go wrong, in English and
German, for an admin), ``tls`` (whom to trust, what a certificate says). The registry imports it only when
``connection`` is ``smtp``."""
