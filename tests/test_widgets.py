from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory, override_settings

from django_etpay.widgets import widget_config
from tests.factories import make_session

pytestmark = pytest.mark.django_db


def test_widget_config_for_a_pending_session() -> None:
    session = make_session()
    config = widget_config(session)
    assert config["sessionToken"] == session.token
    assert config["paymentUrl"] == f"https://pmt.etpay.test/session/{session.token}"
    assert config["funnelOrigin"] == "https://pmt.etpay.test"
    assert config["resultUrl"] == "/etpay/widget-result/"
    assert config["successUrl"] is None
    assert config["failureUrl"] is None
    assert config["openOnLoad"] is False
    assert config["texts"]["button"] == "Pay with ETpay"
    assert session.signature_token not in json.dumps(config)


def test_widget_config_absolute_urls_and_overrides() -> None:
    session = make_session()
    request = RequestFactory().get("/checkout/", HTTP_HOST="shop.example")
    config = widget_config(
        session,
        request=request,
        success_url="/thanks/",
        open_on_load=True,
        button_text="Pagar",
    )
    assert config["resultUrl"] == "http://shop.example/etpay/widget-result/"
    assert config["successUrl"] == "http://shop.example/thanks/"
    assert config["openOnLoad"] is True
    assert config["texts"]["button"] == "Pagar"


def test_widget_config_reads_the_settings_urls() -> None:
    session = make_session()
    etpay = {**django_settings.ETPAY, "SUCCESS_URL": "/ok/", "FAILURE_URL": "/ko/"}
    with override_settings(ETPAY=etpay):
        config = widget_config(session)
    assert (config["successUrl"], config["failureUrl"]) == ("/ok/", "/ko/")


def test_widget_config_refuses_a_session_without_token() -> None:
    session = make_session(token=None, status="error")
    with pytest.raises(ValueError, match="no ETpay token"):
        widget_config(session)
