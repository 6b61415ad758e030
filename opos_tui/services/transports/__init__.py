"""Transports: one interface (``base.Transport``) for every way a mail leaves: SMTP, Simple MAPI, Outlook and
sendmail (Graph later). ``registry`` chooses one by ``connection``; the queue and the screens never ask
which one is in use."""
