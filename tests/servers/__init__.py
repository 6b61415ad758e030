"""Real servers the tests start on 127.0.0.1: SMTP (aiosmtpd) in plain, STARTTLS and implicit-TLS modes."""
