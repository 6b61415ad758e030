"""Transports: one interface (``base.Transport``) for every way a mail leaves: SMTP now; Simple MAPI, Outlook,
sendmail and Graph later. ``registry`` chooses one by ``connection``; the queue and the screens never ask
which one is in use."""
