"""The web console: investigators, intake officers, supervisors and oversight bodies in a browser.

A gRPC client of the service and nothing more: it signs people in through ``SignIn`` (the server's
key store is the one identity authority), keeps their short-lived session token in memory, and
renders server-side HTML (Starlette + Jinja2, no JavaScript, nothing fetched from elsewhere).
"""
