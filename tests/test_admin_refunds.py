"""The admin's refunds and double payments: the ledger behind its permission, extra payments in
view."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from django_etpay import admin as etpay_admin
from django_etpay import refunds
from django_etpay.models import Notification, OutboxEffect, PaymentSession, Refund
from tests.factories import make_session

pytestmark = pytest.mark.django_db

SESSIONS = "admin:django_etpay_paymentsession_changelist"
REFUNDS = "admin:django_etpay_refund_changelist"
State = Refund.State


def staff(*codenames: str) -> tuple[Client, User]:
    """A logged-in staff client holding exactly the given django_etpay permissions."""
    user = User.objects.create_user(f"staff-{'-'.join(codenames) or 'plain'}", is_staff=True)
    for codename in ("view_paymentsession", "view_outboxeffect", "view_refund", *codenames):
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_etpay", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client, user


def actions(client: Client, url: str) -> set[str]:
    form = client.get(reverse(url)).context["action_form"]
    if form is None:
        return set()
    return {name for name, _label in form.fields["action"].choices if name}


def paid(amount: int = 10000, **values: Any) -> PaymentSession:
    return make_session(
        status=PaymentSession.Status.PAID, order_amount=amount, payment_token="pay-1", **values
    )


def extra_payment(session: PaymentSession, payment: str = "pay-2") -> Notification:
    notification = Notification.objects.create(
        session=session,
        channel=Notification.Channel.WEBHOOK,
        outcome=Notification.Outcome.DUPLICATE,
        reason=Notification.Reason.NOT_APPLICABLE,
        result=Notification.Result.SUCCESS,
        payment_token=payment,
        claims={
            "merchant_amount": session.order_amount,
            "payment_date": "04-12-2026 18:07:34",
            "user_bank": "Banco Extra",
            "user_account": "Cuenta Vista 555",
            "user_rut": "222222222",
        },
    )
    OutboxEffect.objects.create(
        kind=OutboxEffect.Kind.PAYMENT_DUPLICATED,
        session=session,
        notification=notification,
        lease_until=session.created_at,
        state=OutboxEffect.State.DONE,
    )
    return notification


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- double payments --------------------------------------------------------------------------


def test_the_paid_more_than_once_filter_lists_only_double_payments(admin_client: Client) -> None:
    twice = paid(merchant_order_id="OC-TWICE")
    extra_payment(twice)
    extra_payment(twice, "pay-3")  # listed once all the same
    paid(merchant_order_id="OC-ONCE")

    response = admin_client.get(reverse(SESSIONS), {"paid_twice": "yes"})

    listed = [s.merchant_order_id for s in response.context["cl"].result_list]
    assert listed == ["OC-TWICE"]
    assert len(admin_client.get(reverse(SESSIONS)).context["cl"].result_list) == 2


def test_the_session_page_shows_the_extra_payments_amount_time_and_payer(
    admin_client: Client,
) -> None:
    session = paid(12345)
    extra_payment(session)

    html = admin_client.get(
        reverse("admin:django_etpay_paymentsession_change", args=[session.pk])
    ).content.decode()

    assert "Extra payments (paid more than once)" in html
    assert "pay-2" in html
    assert "$12.345 CLP" in html
    assert "04-12-2026 18:07:34" in html
    assert "Banco Extra, Cuenta Vista 555, 222222222" in html


def test_the_extra_payers_account_needs_the_payer_data_permission() -> None:
    session = paid()
    extra_payment(session)
    client, _user = staff()

    html = client.get(
        reverse("admin:django_etpay_paymentsession_change", args=[session.pk])
    ).content.decode()

    assert "Banco Extra" in html
    assert "Cuenta Vista 555" not in html
    assert "222222222" not in html


# -- refunds ----------------------------------------------------------------------------------


def test_the_refund_actions_need_the_request_refund_permission() -> None:
    paid()
    without, _user = staff()
    with_it, _user = staff("request_refund")

    assert "request_refund_selected" not in actions(without, SESSIONS)
    assert "request_refund_selected" in actions(with_it, SESSIONS)
    assert actions(without, REFUNDS) == set()
    assert actions(with_it, REFUNDS) == {"complete_selected", "fail_selected"}


def test_the_request_action_asks_then_records_a_partial_refund() -> None:
    session = paid(10000)
    client, user = staff("request_refund")
    selection = {"action": "request_refund_selected", helpers.ACTION_CHECKBOX_NAME: [session.pk]}

    page = client.post(reverse(SESSIONS), selection)

    assert page.status_code == 200
    assert page.templates[0].name == "admin/django_etpay/refund_action.html"
    assert not Refund.objects.exists()

    done = client.post(
        reverse(SESSIONS),
        {**selection, "apply": "1", "amount": "2500", "reason": "broken mug"},
        follow=True,
    )

    [refund] = Refund.objects.all()
    assert (refund.amount, refund.reason, refund.state) == (2500, "broken mug", State.REQUESTED)
    assert refund.requested_by == user
    assert "1 refund requested." in messages_of(done)


def test_the_request_action_without_an_amount_refunds_what_is_left() -> None:
    session = paid(10000)
    refunds.request_refund(session, 4000, reason="first")
    unpaid = make_session(merchant_order_id="OC-UNPAID")
    client, _user = staff("request_refund")

    done = client.post(
        reverse(SESSIONS),
        {
            "action": "request_refund_selected",
            helpers.ACTION_CHECKBOX_NAME: [session.pk, unpaid.pk],
            "apply": "1",
            "amount": "",
            "reason": "order cancelled",
        },
        follow=True,
    )

    assert sorted(Refund.objects.values_list("amount", flat=True)) == [4000, 6000]
    assert not Refund.objects.filter(session=unpaid).exists()
    assert any("nothing left to refund" in m for m in messages_of(done))


def test_the_request_action_refuses_more_than_was_paid() -> None:
    session = paid(10000)
    client, _user = staff("request_refund")

    done = client.post(
        reverse(SESSIONS),
        {
            "action": "request_refund_selected",
            helpers.ACTION_CHECKBOX_NAME: [session.pk],
            "apply": "1",
            "amount": "10001",
            "reason": "too much",
        },
        follow=True,
    )

    assert not Refund.objects.exists()
    assert any("exceeds what is left" in m for m in messages_of(done))


def test_the_request_action_needs_a_reason() -> None:
    session = paid(10000)
    client, _user = staff("request_refund")

    page = client.post(
        reverse(SESSIONS),
        {
            "action": "request_refund_selected",
            helpers.ACTION_CHECKBOX_NAME: [session.pk],
            "apply": "1",
            "amount": "100",
            "reason": "",
        },
    )

    assert page.status_code == 200
    assert page.context["form"].errors["reason"]
    assert not Refund.objects.exists()


def test_staff_mark_a_refund_completed_with_etpays_reference() -> None:
    refund = refunds.request_refund(paid(), 1000, reason="r")
    client, _user = staff("request_refund")
    selection = {"action": "complete_selected", helpers.ACTION_CHECKBOX_NAME: [refund.pk]}

    assert client.post(reverse(REFUNDS), selection).status_code == 200
    client.post(reverse(REFUNDS), {**selection, "apply": "1", "reference": "ETP-42"})

    refund.refresh_from_db()
    assert (refund.state, refund.reference) == (State.COMPLETED, "ETP-42")


def test_completing_needs_exactly_one_refund() -> None:
    session = paid()
    first = refunds.request_refund(session, 1000, reason="r")
    second = refunds.request_refund(session, 1000, reason="r")
    client, _user = staff("request_refund")

    done = client.post(
        reverse(REFUNDS),
        {
            "action": "complete_selected",
            helpers.ACTION_CHECKBOX_NAME: [first.pk, second.pk],
            "apply": "1",
            "reference": "ETP-1",
        },
        follow=True,
    )

    assert set(Refund.objects.values_list("state", flat=True)) == {State.REQUESTED}
    assert "Select exactly one refund to mark completed." in messages_of(done)


def test_staff_mark_refunds_failed_and_a_final_one_is_left_alone() -> None:
    session = paid()
    open_one = refunds.request_refund(session, 1000, reason="r")
    done_one = refunds.request_refund(session, 1000, reason="r")
    refunds.complete_refund(done_one, reference="ETP-9")
    client, _user = staff("request_refund")

    response = client.post(
        reverse(REFUNDS),
        {
            "action": "fail_selected",
            helpers.ACTION_CHECKBOX_NAME: [open_one.pk, done_one.pk],
            "apply": "1",
            "reason": "account closed",
        },
        follow=True,
    )

    open_one.refresh_from_db()
    done_one.refresh_from_db()
    assert (open_one.state, open_one.failure_reason) == (State.FAILED, "account closed")
    assert done_one.state == State.COMPLETED
    assert "1 refund marked failed." in messages_of(response)


def test_the_session_page_shows_its_refunds_and_the_refunded_amount(
    admin_client: Client,
) -> None:
    session = paid(10000)
    done = refunds.request_refund(session, 3000, reason="first box")
    refunds.complete_refund(done, reference="ETP-77")
    refunds.request_refund(session, 1500, reason="second box")

    html = admin_client.get(
        reverse("admin:django_etpay_paymentsession_change", args=[session.pk])
    ).content.decode()

    assert "$3.000 CLP (and $1.500 CLP requested, not confirmed yet)" in html
    assert "ETP-77" in html
    assert "second box" in html


def test_refunds_cannot_be_added_changed_or_deleted_by_hand(admin_client: Client) -> None:
    refund = refunds.request_refund(paid(), 1000, reason="r")

    assert admin_client.get(reverse("admin:django_etpay_refund_add")).status_code == 403
    page = admin_client.get(reverse("admin:django_etpay_refund_change", args=[refund.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert "delete_selected" not in actions(admin_client, REFUNDS)


def test_the_request_action_refuses_huge_selections(monkeypatch: Any) -> None:
    monkeypatch.setattr(etpay_admin, "MAX_ACTION_SESSIONS", 2)
    sessions = [paid() for _ in range(3)]
    client, _user = staff("request_refund")

    done = client.post(
        reverse(SESSIONS),
        {
            "action": "request_refund_selected",
            helpers.ACTION_CHECKBOX_NAME: [s.pk for s in sessions],
            "apply": "1",
            "amount": "1",
            "reason": "many",
        },
        follow=True,
    )

    assert not Refund.objects.exists()
    assert "Select at most 2 sessions to refund at once." in messages_of(done)
