"""How long the payer waits: from "Approve" in the funnel to the shop's success page.

Serves the example shop and its sandbox (as the browser tests do), then pays ``--runs`` orders
through the widget and as many through the plain redirect button, alternating, in Debian's
Chromium, and prints the median and 90th percentile of each and their ratio. Both flows run in
the same process on the same machine, so load from elsewhere weighs on both alike.

    python -m benchmarks.widget_roundtrip --runs 10

Needs the ``test`` and ``heavy`` extras and ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _pay(page: Any, shop: Any, *, widget: bool) -> float:
    from tests.browser.conftest import buy, funnel_frame, wait_for_order_page

    number = buy(page, shop)
    if widget:
        funnel = funnel_frame(page)
    else:
        page.keyboard.press("Escape")
        page.locator(".etpay-pay-button").click()
        page.wait_for_url(f"{shop.sandbox_url}/session/*")
        funnel = page
    funnel.get_by_label("RUT").fill("11.111.111-1")
    button = funnel.get_by_role("button", name="Aprobar pago")
    button.wait_for()
    started = time.perf_counter()
    button.click()
    wait_for_order_page(page, shop, number)
    page.locator("#order-status", has_text="Pagado").wait_for()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="payments per flow")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import launch, served_shop

    timings: dict[str, list[float]] = {"widget": [], "redirect": []}
    with (
        tempfile.TemporaryDirectory() as folder,
        served_shop(Path(folder)) as shop,
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        for _ in range(args.runs):
            for flow in ("widget", "redirect"):
                context = browser.new_context(locale="es-CL")
                page = context.new_page()
                timings[flow].append(_pay(page, shop, widget=flow == "widget"))
                context.close()
        browser.close()
    for flow, values in timings.items():
        ordered = sorted(values)
        p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
        print(
            f"{flow:8s} n={len(values)} median={statistics.median(values) * 1000:.0f} ms "
            f"p90={p90 * 1000:.0f} ms min={ordered[0] * 1000:.0f} ms"
        )
    ratio = statistics.median(timings["widget"]) / statistics.median(timings["redirect"])
    print(f"widget / redirect median ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
