"""Webhooks: signed HTTP deliveries of routed events, retried until they land.

`signing` and `attempts` are pure and shared with the AWS webhook function;
`base` is the port to the store's outbox; `dispatcher` sends.
"""
