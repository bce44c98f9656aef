"""A stand-in for a shop's own app: an ``Order`` model with a foreign key to ``PaymentSession``.

It exists so that the tests can prove what a shop's own admin can and cannot do with the
``signature_token`` behind that foreign key.
"""
