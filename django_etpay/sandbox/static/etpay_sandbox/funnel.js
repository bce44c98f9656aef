// ETpay sandbox funnel: tells the server it is framed, and talks to the page that frames it.
//
// Messages go only to the merchant's own origins (from the session's URLs), never to a wildcard,
// and each names its session:
//   {type: "etpay:ready", session_token}           the funnel is up inside the frame;
//   {type: "etpay:result", session_token, payment}  the result JWT, once the payer is done;
//   {type: "etpay:close", session_token}           Escape pressed here, where the page that
//                                                   frames the funnel cannot see the key.
(function () {
  "use strict";
  var framed = window.parent !== window;
  var flag = document.getElementById("etpay-sandbox-framed");
  if (flag && framed) {
    flag.value = "1";
  }
  var page = document.getElementById("etpay-sandbox-page");
  if (!framed || !page) {
    return;
  }
  var session = page.getAttribute("data-session");
  var origins = (page.getAttribute("data-origins") || "").split(" ").filter(Boolean);

  function tell(message) {
    message.session_token = session;
    // Only the merchant's own origins, never a wildcard: the JWT must not reach another page.
    origins.forEach(function (origin) {
      window.parent.postMessage(message, origin);
    });
  }

  tell({ type: "etpay:ready" });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      tell({ type: "etpay:close" });
    }
  });
  var result = document.getElementById("etpay-sandbox-result");
  if (result) {
    tell({ type: "etpay:result", payment: result.getAttribute("data-payment") });
  }
})();
