"""The gateway: open connections, what each follows, and pushing to them."""
