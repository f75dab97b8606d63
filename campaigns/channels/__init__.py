"""Channel providers behind one small interface: the sandbox here, Twilio and SendGrid live."""
