// The example shop's single-page checkout: JSON calls only, plain JavaScript, no build step.
//
// 1. POST the shop's own order endpoint (the price comes from the catalogue on the server);
// 2. POST django-etpay's REST API for an ETpay session for that order (the shop's order hook
//    decides the amount; the browser only names the order);
// 3. open the payment widget with the reply's configuration, or go to the payment page when
//    the widget loader is not available;
// 4. poll the session's status URL until ETpay's result is in.
(function () {
  "use strict";

  var form = document.getElementById("spa-checkout");
  var box = document.getElementById("spa-status");
  if (!form || !box) {
    return;
  }
  var STORE_KEY = "shop-spa-session";
  var POLL_MS = 2000;
  var MAX_POLLS = 90; // three minutes, then the page says it will confirm later
  // Statuses after which polling stops (paid is final; the others can still turn paid).
  var ENDED = ["paid", "failed", "expired", "error"];
  var button = document.getElementById("spa-pay");
  // Under a nonce-based Content-Security-Policy, the loader inherits this script's nonce.
  var nonce = document.currentScript ? document.currentScript.nonce : "";
  // Translated by the page (json_script), so that the script carries no language of its own.
  var texts = {};
  try {
    texts = JSON.parse(document.getElementById("spa-texts").textContent) || {};
  } catch (e) {
    texts = {};
  }

  function t(key, values) {
    var text = texts[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      text = text.replace("%(" + name + ")s", String(values[name]));
    });
    return text;
  }

  function csrfToken() {
    var found = "";
    document.cookie.split(";").forEach(function (pair) {
      var index = pair.indexOf("=");
      if (index > -1 && pair.slice(0, index).trim() === "csrftoken") {
        found = decodeURIComponent(pair.slice(index + 1).trim());
      }
    });
    return found;
  }

  function request(method, url, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = csrfToken();
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          return { status: response.status, data: data || {}, headers: response.headers };
        });
    });
  }

  // -- errors, per field ---------------------------------------------------------------------

  // API field -> the form field it is shown under.
  var FIELD_OF = { customer_email: "email", order: "general", non_field_errors: "general" };

  function clearErrors() {
    Array.prototype.forEach.call(form.querySelectorAll("[data-error-for]"), function (node) {
      node.textContent = "";
    });
  }

  function showError(field, text) {
    var node =
      form.querySelector('[data-error-for="' + field + '"]') ||
      form.querySelector('[data-error-for="general"]');
    node.textContent = node.textContent ? node.textContent + " " + text : text;
  }

  function showErrors(reply) {
    var data = reply.data;
    if (reply.status === 429) {
      var wait = reply.headers.get("Retry-After");
      showError("general", t("throttled", { seconds: wait || "60" }));
      return;
    }
    if (typeof data.detail === "string") {
      showError("general", data.detail);
      return;
    }
    var shown = false;
    Object.keys(data).forEach(function (key) {
      var messages = Array.isArray(data[key]) ? data[key] : [String(data[key])];
      showError(FIELD_OF[key] || key, messages.join(" "));
      shown = true;
    });
    if (!shown) {
      showError("general", t("unexpected", { status: reply.status }));
    }
  }

  // -- the status box ------------------------------------------------------------------------

  function slot(name) {
    return box.querySelector('[data-slot="' + name + '"]');
  }

  function setState(state, message, session) {
    box.hidden = false;
    if (session) {
      slot("order").textContent = session.merchant_order_id;
      slot("amount").textContent = session.amount_display + " " + session.currency;
    }
    var badge = slot("state");
    badge.textContent = t("state_" + state);
    var look = state === "paid" ? "paid" : ENDED.indexOf(state) > -1 ? "failed" : "pending";
    badge.className = "status status-" + look;
    box.setAttribute("data-state", state);
    slot("message").textContent = message;
  }

  function offerRetry(order) {
    var again = document.createElement("button");
    again.type = "button";
    again.id = "spa-pay-again";
    again.textContent = t("payAgain");
    again.addEventListener("click", function () {
      again.remove();
      createSession(order, null);
    });
    slot("message").appendChild(document.createTextNode(" "));
    slot("message").appendChild(again);
  }

  // -- paying --------------------------------------------------------------------------------

  function loadWidget(callback) {
    if (window.EtpayWidget) {
      callback(true);
      return;
    }
    var done = false;
    function finish(ok) {
      if (!done) {
        done = true;
        callback(ok && !!window.EtpayWidget);
      }
    }
    var script = document.createElement("script");
    if (nonce) {
      script.nonce = nonce;
    }
    script.src = form.getAttribute("data-widget-src");
    script.onload = function () {
      finish(true);
    };
    script.onerror = function () {
      finish(false);
    };
    window.setTimeout(function () {
      finish(false);
    }, 5000);
    document.head.appendChild(script);
  }

  function openPayment(session) {
    loadWidget(function (available) {
      if (!available) {
        // No widget loader: the payment page itself, the redirect every browser supports.
        window.location.assign(session.payment_url);
        return;
      }
      var holder = document.getElementById("spa-widget");
      holder.textContent = "";
      var config = document.createElement("script");
      config.type = "application/json";
      config.id = "spa-etpay-config-" + session.id;
      config.textContent = JSON.stringify(session.widget);
      var container = document.createElement("div");
      container.setAttribute("data-etpay-widget", "");
      container.setAttribute("data-etpay-config", config.id);
      var link = document.createElement("a");
      link.href = session.payment_url;
      link.textContent = session.widget.texts ? session.widget.texts.button : t("pay");
      container.appendChild(link);
      holder.appendChild(config);
      holder.appendChild(container);
      holder.hidden = false;
      window.EtpayWidget.scan();
      window.EtpayWidget.open(container);
    });
  }

  function createSession(order, bank) {
    setState("opening", t("opening"));
    var body = { order: order };
    if (bank) {
      body.user_bank_code = bank;
    }
    return request("POST", form.getAttribute("data-sessions-url"), body).then(function (reply) {
      if (reply.status !== 201) {
        button.disabled = false;
        box.hidden = true;
        showErrors(reply);
        return;
      }
      var session = reply.data;
      window.sessionStorage.setItem(
        STORE_KEY,
        JSON.stringify({ order: order, statusUrl: session.status_url })
      );
      setState(session.status, t("complete"), session);
      openPayment(session);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    button.disabled = true;
    var fields = form.elements;
    var order = {
      product: fields.product.value,
      email: fields.email.value,
      quantity: Number(fields.quantity.value),
    };
    request("POST", form.getAttribute("data-order-url"), order)
      .then(function (reply) {
        if (reply.status !== 201) {
          button.disabled = false;
          showErrors(reply);
          return null;
        }
        return createSession(reply.data.number, fields.user_bank_code.value);
      })
      .catch(function () {
        button.disabled = false;
        showError("general", t("unreachable"));
      });
  });

  // -- polling -------------------------------------------------------------------------------


  function poll(saved, attempt) {
    request("GET", saved.statusUrl).then(
      function (reply) {
        if (reply.status !== 200) {
          setState("unknown", t("notShown"));
          window.sessionStorage.removeItem(STORE_KEY);
          return;
        }
        var session = reply.data;
        if (session.is_final) {
          setState("paid", t("paid"), session);
          window.sessionStorage.removeItem(STORE_KEY);
          return;
        }
        if (ENDED.indexOf(session.status) > -1) {
          // Not final: ETpay may still report money that moved; the shop e-mails if it does.
          setState(session.status, t(session.status), session);
          offerRetry(saved.order);
          return;
        }
        if (attempt >= MAX_POLLS) {
          setState(session.status, t("stillWaiting"), session);
          return;
        }
        setState(session.status, t("waiting"), session);
        window.setTimeout(function () {
          poll(saved, attempt + 1);
        }, POLL_MS);
      },
      function () {
        window.setTimeout(function () {
          poll(saved, attempt + 1);
        }, POLL_MS);
      }
    );
  }

  var saved = null;
  try {
    saved = JSON.parse(window.sessionStorage.getItem(STORE_KEY) || "null");
  } catch (e) {
    saved = null;
  }
  if (saved && saved.statusUrl) {
    poll(saved, 0);
  }
})();
