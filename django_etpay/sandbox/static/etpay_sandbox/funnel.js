// ETpay sandbox funnel: tells the server it is framed, and hands the result to the parent page.
(function () {
  "use strict";
  var framed = window.parent !== window;
  var flag = document.getElementById("etpay-sandbox-framed");
  if (flag && framed) {
    flag.value = "1";
  }
  var result = document.getElementById("etpay-sandbox-result");
  if (!result || !framed) {
    return;
  }
  var payment = result.getAttribute("data-payment");
  var origins = (result.getAttribute("data-origins") || "").split(" ");
  // Only the merchant's own origins, never a wildcard: the JWT must not reach another page.
  origins.forEach(function (origin) {
    if (origin) {
      window.parent.postMessage({ type: "etpay:result", payment: payment }, origin);
    }
  });
})();
