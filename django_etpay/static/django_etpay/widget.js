/*
 * django-etpay widget loader: opens ETpay's payment page in a dialog on the shop's own page.
 *
 * No dependencies and no build step. Each element with [data-etpay-widget] names, in
 * data-etpay-config, a JSON script element holding django_etpay.widgets.widget_config(). The
 * element's link is the plain redirect to the payment page; this script turns a click on it
 * into a dialog with the page framed, and:
 *
 * - accepts messages only from the funnel's origin, from its own frame, for its own session
 *   (the JWT's session_token claim must match too); anything else is ignored and reported as
 *   an "etpay:ignored" event on the container;
 * - posts the result JWT to the shop's widget-result view with the CSRF token, shows
 *   "confirming", then goes to the success or failure page the reply or the config names;
 * - falls back to the full-page redirect when the frame cannot be used: no <dialog> support,
 *   or a funnel that never announces itself ("etpay:ready") because framing was refused.
 *
 * A funnel that speaks to the loader sends {type, session_token}: "etpay:ready" once it is up,
 * "etpay:result" with the JWT in "payment", and "etpay:close" when the payer presses Escape
 * inside it (key presses in a cross-origin frame never reach this page).
 *
 * Events on the container (bubbling CustomEvents): etpay:open, etpay:ready, etpay:close,
 * etpay:ignored {reason}, etpay:confirming, etpay:result {kind, status, httpStatus, url},
 * etpay:fallback {reason}.
 */
(function () {
  "use strict";

  if (window.EtpayWidget) {
    window.EtpayWidget.scan();
    return;
  }

  var widgets = [];
  var counter = 0;
  // Longest JWT accepted from a message; ETpay's are well under 2 KB.
  var MAX_JWT = 16384;
  // How long a final message stays before the payer is taken on (not for "paid").
  var NOTICE_MS = 3000;

  function emit(target, name, detail) {
    var event;
    try {
      event = new CustomEvent(name, { bubbles: true, detail: detail || {} });
    } catch (e) {
      return;
    }
    target.dispatchEvent(event);
  }

  function make(tag, className, attrs) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    return node;
  }

  function readConfig(container) {
    var id = container.getAttribute("data-etpay-config");
    var node = id ? document.getElementById(id) : null;
    if (!node) {
      return null;
    }
    try {
      var config = JSON.parse(node.textContent);
      return config && typeof config === "object" && config.paymentUrl ? config : null;
    } catch (e) {
      return null;
    }
  }

  function jwtClaims(jwt) {
    if (typeof jwt !== "string" || jwt.length > MAX_JWT) {
      return null;
    }
    var parts = jwt.split(".");
    if (parts.length !== 3) {
      return null;
    }
    try {
      var b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      while (b64.length % 4) {
        b64 += "=";
      }
      var binary = atob(b64);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i += 1) {
        bytes[i] = binary.charCodeAt(i);
      }
      var claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === "object" ? claims : null;
    } catch (e) {
      return null;
    }
  }

  function readCookie(name) {
    if (!name) {
      return "";
    }
    var found = "";
    document.cookie.split(";").forEach(function (pair) {
      var index = pair.indexOf("=");
      if (index > -1 && pair.slice(0, index).trim() === name) {
        found = decodeURIComponent(pair.slice(index + 1).trim());
      }
    });
    return found;
  }

  function isUrl(value) {
    return typeof value === "string" && /^(\/(?!\/)|https?:\/\/)/.test(value);
  }

  function Widget(container, config) {
    this.container = container;
    this.config = config;
    this.texts = config.texts || {};
    this.dialog = null;
    this.frame = null;
    this.ready = false;
    this.confirming = false;
    this.timers = [];
    this.opener = null;
    this.id = (counter += 1);
    var link = container.querySelector("a[href]");
    this.link = link;
    var self = this;
    if (link) {
      link.setAttribute("aria-haspopup", "dialog");
      link.addEventListener("click", function (event) {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
          return; // a new tab or window: let the browser follow the plain link
        }
        event.preventDefault();
        self.open(link);
      });
    }
  }

  Widget.prototype.text = function (key) {
    return this.texts[key] || "";
  };

  Widget.prototype.later = function (fn, ms) {
    this.timers.push(window.setTimeout(fn, ms));
  };

  Widget.prototype.clearTimers = function () {
    this.timers.forEach(function (timer) {
      window.clearTimeout(timer);
    });
    this.timers = [];
  };

  Widget.prototype.open = function (opener) {
    if (this.dialog) {
      return;
    }
    if (typeof HTMLDialogElement !== "function" || !window.postMessage) {
      this.fallback("unsupported");
      return;
    }
    // Focus goes back here on close; a dialog opened on load goes back to the pay link.
    this.opener = opener || this.link || document.activeElement;
    this.ready = false;
    this.confirming = false;
    this.build();
    document.documentElement.classList.add("etpay-dialog-open");
    this.dialog.showModal();
    emit(this.container, "etpay:open", {});
  };

  Widget.prototype.build = function () {
    var self = this;
    var titleId = "etpay-dialog-title-" + this.id;
    var summaryId = "etpay-dialog-summary-" + this.id;
    var dialog = make("dialog", "etpay-dialog", {
      "aria-labelledby": titleId,
      "aria-describedby": summaryId,
    });
    var header = make("div", "etpay-dialog__header");
    var heading = make("div", "etpay-dialog__heading");
    var title = make("h2", "etpay-dialog__title", { id: titleId });
    title.textContent = this.text("title");
    var summary = make("p", "etpay-dialog__summary", { id: summaryId });
    var info = this.config.summary || {};
    summary.textContent = info.label || "";
    heading.appendChild(title);
    heading.appendChild(summary);
    var close = make("button", "etpay-dialog__close", {
      type: "button",
      "aria-label": this.text("close"),
    });
    close.textContent = "\u00d7";
    close.addEventListener("click", function () {
      self.close();
    });
    header.appendChild(heading);
    header.appendChild(close);

    var body = make("div", "etpay-dialog__body");
    var frame = make("iframe", "etpay-dialog__frame", {
      title: this.text("frameTitle"),
      allow: "payment",
    });
    frame.addEventListener("load", function () {
      self.frameLoaded();
    });
    var status = make("div", "etpay-dialog__status", { role: "status", "aria-live": "polite" });
    var spinner = make("span", "etpay-spinner", { "aria-hidden": "true" });
    var message = make("p", "etpay-dialog__message");
    var actions = make("div", "etpay-dialog__actions");
    status.appendChild(spinner);
    status.appendChild(message);
    status.appendChild(actions);
    body.appendChild(frame);
    body.appendChild(status);

    var footer = make("p", "etpay-dialog__footer");
    var direct = make("a", "etpay-dialog__fallback", { href: this.config.paymentUrl });
    direct.textContent = this.text("fallback");
    footer.appendChild(direct);

    dialog.appendChild(header);
    dialog.appendChild(body);
    dialog.appendChild(footer);
    dialog.addEventListener("cancel", function (event) {
      // Escape: close, except while the result is being confirmed.
      event.preventDefault();
      self.close();
    });
    dialog.addEventListener("close", function () {
      self.teardown();
    });

    this.dialog = dialog;
    this.frame = frame;
    this.status = status;
    this.message = message;
    this.actions = actions;
    this.closeButton = close;
    this.footer = footer;
    this.showStatus(this.text("loading"), true);
    document.body.appendChild(dialog);
    frame.src = this.config.paymentUrl;
    // A frame that never even loads (a stalled network) must not leave the payer waiting.
    this.later(function () {
      if (!self.ready) {
        self.fallback("no-load");
      }
    }, (this.config.handshakeTimeoutMs || 3000) + 12000);
  };

  Widget.prototype.frameLoaded = function () {
    var self = this;
    if (this.ready || !this.dialog) {
      return;
    }
    // A refused frame still fires "load" (with the browser's error page inside); only the
    // funnel's own "etpay:ready" proves the frame is usable.
    this.later(function () {
      if (!self.ready && self.dialog) {
        self.fallback("handshake");
      }
    }, this.config.handshakeTimeoutMs || 3000);
  };

  Widget.prototype.showStatus = function (text, busy, buttons) {
    this.message.textContent = text;
    this.status.hidden = false;
    this.status.classList.toggle("etpay-dialog__status--busy", !!busy);
    this.dialog.setAttribute("aria-busy", busy ? "true" : "false");
    this.actions.textContent = "";
    var first = null;
    var self = this;
    (buttons || []).forEach(function (spec) {
      var button = make("button", "etpay-button etpay-dialog__action", { type: "button" });
      button.textContent = spec.label;
      button.addEventListener("click", spec.onClick);
      self.actions.appendChild(button);
      first = first || button;
    });
    if (first) {
      first.focus();
    }
  };

  Widget.prototype.hideStatus = function () {
    this.status.hidden = true;
    this.dialog.setAttribute("aria-busy", "false");
  };

  Widget.prototype.ignore = function (reason) {
    emit(this.container, "etpay:ignored", { reason: reason });
  };

  Widget.prototype.receive = function (event) {
    if (!this.dialog) {
      return;
    }
    if (event.origin !== this.config.funnelOrigin) {
      this.ignore("origin");
      return;
    }
    if (!this.frame || event.source !== this.frame.contentWindow) {
      this.ignore("source");
      return;
    }
    var data = event.data;
    if (!data || typeof data !== "object" || typeof data.type !== "string") {
      this.ignore("type");
      return;
    }
    if (data.session_token !== undefined && data.session_token !== this.config.sessionToken) {
      this.ignore("session");
      return;
    }
    if (data.type === "etpay:ready") {
      if (!this.ready) {
        this.ready = true;
        this.clearTimers();
        if (!this.confirming) {
          this.hideStatus();
        }
        emit(this.container, "etpay:ready", {});
      }
      return;
    }
    if (data.type === "etpay:close") {
      // Escape pressed inside the funnel: key events do not cross into this page.
      this.close();
      return;
    }
    if (data.type !== "etpay:result") {
      this.ignore("type");
      return;
    }
    var claims = jwtClaims(data.payment);
    if (!claims) {
      this.ignore("payload");
      return;
    }
    if (claims.session_token !== this.config.sessionToken) {
      this.ignore("session");
      return;
    }
    if (this.confirming) {
      this.ignore("duplicate");
      return;
    }
    this.ready = true;
    this.clearTimers();
    this.confirm(data.payment);
  };

  Widget.prototype.confirm = function (jwt) {
    var self = this;
    this.confirming = true;
    this.frame.hidden = true;
    this.footer.hidden = true;
    this.closeButton.disabled = true;
    this.showStatus(this.text("confirming"), true);
    emit(this.container, "etpay:confirming", {});

    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timedOut = false;
    var timer = window.setTimeout(function () {
      timedOut = true;
      if (controller) {
        controller.abort();
      }
    }, this.config.resultTimeoutMs || 20000);
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = this.config.csrfToken || readCookie(this.config.csrfCookieName);
    if (token) {
      headers[this.config.csrfHeaderName || "X-CSRFToken"] = token;
    }
    var httpStatus = 0;
    fetch(this.config.resultUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: JSON.stringify({ payment: jwt }),
      signal: controller ? controller.signal : undefined,
    })
      .then(function (response) {
        httpStatus = response.status;
        return response.json().catch(function () {
          return null;
        });
      })
      .then(
        function (body) {
          window.clearTimeout(timer);
          if (timedOut) {
            self.unreachable("timeout", jwt);
            return;
          }
          self.answered(httpStatus, body);
        },
        function () {
          window.clearTimeout(timer);
          self.unreachable(timedOut ? "timeout" : "networkError", jwt);
        }
      );
  };

  Widget.prototype.answered = function (httpStatus, body) {
    var config = this.config;
    var status = body && typeof body.status === "string" ? body.status : "unknown";
    var replyUrl = body && isUrl(body.redirect_url) ? body.redirect_url : null;
    var ok = httpStatus >= 200 && httpStatus < 300;
    var kind = ok && ["paid", "failed", "pending"].indexOf(status) > -1 ? status : "unknown";
    var url;
    if (kind === "paid") {
      url = config.successUrl || replyUrl;
    } else if (kind === "failed") {
      url = config.failureUrl || replyUrl;
    } else if (kind === "pending") {
      url = replyUrl || config.failureUrl || config.successUrl;
    } else {
      url = config.failureUrl;
    }
    emit(this.container, "etpay:result", {
      kind: kind,
      status: status,
      httpStatus: httpStatus,
      url: url || null,
    });
    if (kind === "paid") {
      this.showStatus(this.text("paid"), true);
      this.go(url);
      return;
    }
    var self = this;
    this.showStatus(this.text(kind), false, [
      {
        label: this.text("continue"),
        onClick: function () {
          self.go(url);
        },
      },
    ]);
    this.later(function () {
      self.go(url);
    }, NOTICE_MS);
  };

  Widget.prototype.unreachable = function (kind, jwt) {
    var self = this;
    emit(this.container, "etpay:result", { kind: kind, status: "unknown", httpStatus: 0, url: null });
    this.showStatus(this.text(kind), false, [
      {
        label: this.text("retry"),
        onClick: function () {
          self.confirm(jwt);
        },
      },
      {
        label: this.text("continue"),
        onClick: function () {
          self.go(self.config.failureUrl);
        },
      },
    ]);
  };

  Widget.prototype.go = function (url) {
    this.clearTimers();
    if (url) {
      window.location.assign(url);
    } else {
      window.location.reload();
    }
  };

  Widget.prototype.fallback = function (reason) {
    this.clearTimers();
    emit(this.container, "etpay:fallback", { reason: reason });
    if (this.dialog) {
      this.frame.hidden = true;
      this.showStatus(this.text("redirecting"), true);
    }
    window.location.assign(this.config.paymentUrl);
  };

  Widget.prototype.close = function () {
    if (!this.dialog || this.confirming) {
      return;
    }
    this.dialog.close();
  };

  Widget.prototype.teardown = function () {
    if (!this.dialog) {
      return;
    }
    this.clearTimers();
    var dialog = this.dialog;
    this.dialog = null;
    this.frame = null;
    dialog.parentNode.removeChild(dialog);
    document.documentElement.classList.remove("etpay-dialog-open");
    if (this.opener && typeof this.opener.focus === "function") {
      this.opener.focus();
    }
    emit(this.container, "etpay:close", {});
  };

  function scan() {
    var found = document.querySelectorAll("[data-etpay-widget]");
    Array.prototype.forEach.call(found, function (container) {
      if (container.getAttribute("data-etpay-ready") === "1") {
        return;
      }
      var config = readConfig(container);
      if (!config) {
        return; // the plain link keeps working
      }
      container.setAttribute("data-etpay-ready", "1");
      var widget = new Widget(container, config);
      widgets.push(widget);
      if (config.openOnLoad) {
        widget.open(null);
      }
    });
  }

  window.addEventListener("message", function (event) {
    widgets.forEach(function (widget) {
      widget.receive(event);
    });
  });

  window.EtpayWidget = {
    scan: scan,
    open: function (container) {
      for (var i = 0; i < widgets.length; i += 1) {
        if (widgets[i].container === container) {
          widgets[i].open(null);
        }
      }
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", scan);
  } else {
    scan();
  }
})();
