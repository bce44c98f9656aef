"""A small REST API (Django REST framework) for single-page and mobile checkouts.

Opt-in: include ``django_etpay.api.urls`` beside ``django_etpay.urls``. Sessions are still
created on the server, through :func:`django_etpay.services.initialize_session`; the browser
only says which order it wants to pay, and the shop's order hook decides what that costs.
See ``docs/api.md``.
"""
