"""Transports: one interface (``Transport``) for every way a mail leaves: SMTP now; MAPI, Outlook,
sendmail and Graph later. The queue and the screens never ask which one is in use."""
