"""The sandbox funnel's primary action is in view inside the dialog, without scrolling, on a
laptop (1280x800) and on a phone (360x740): nine banks and the RUT field stay above it or
scroll under it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Shop, buy, expect, funnel_frame

pytestmark = pytest.mark.heavy


@pytest.mark.parametrize(
    ("width", "height", "phone"), [(1280, 800, False), (360, 740, True)], ids=["laptop", "phone"]
)
def test_the_approve_button_is_in_view_without_scrolling(
    new_page: Any, shop: Shop, width: int, height: int, phone: bool
) -> None:
    options: dict[str, Any] = {"viewport": {"width": width, "height": height}}
    if phone:
        options.update(device_scale_factor=2, is_mobile=True, has_touch=True)
    page = new_page(**options)
    buy(page, shop)
    funnel = funnel_frame(page)
    approve = funnel.get_by_role("button", name="Aprobar pago")
    expect(approve).to_be_visible()
    # Where the button is in the funnel's own viewport (the dialog's frame), as first shown.
    top, bottom, viewport, scrolled = approve.evaluate(
        """(el) => { const r = el.getBoundingClientRect();
            return [r.top, r.bottom, window.innerHeight, document.scrollingElement.scrollTop]; }"""
    )
    assert scrolled == 0
    assert top >= 0, (top, viewport)
    assert bottom <= viewport, (bottom, viewport)
    # And the frame itself is inside the page's viewport.
    frame_box = page.locator("iframe.etpay-dialog__frame").bounding_box()
    assert frame_box["y"] >= 0, frame_box
    assert frame_box["y"] + frame_box["height"] <= height + 0.5, frame_box
