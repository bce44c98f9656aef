"""Django integration for ETpay bank-transfer payments."""

__version__ = "0.1.0"
