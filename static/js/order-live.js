/* OfferHub order pages.
 *
 * Live order page: a WebSocket (ws/orders/<id>/) says "something happened to this order";
 * the page then fetches its changing part again (the order's live fragment) and swaps it in.
 * Without a WebSocket (a server without ASGI, a proxy that drops upgrades, a refused
 * socket) the page polls the fragment instead: every few seconds while the order is busy,
 * less often while it waits for people, never once it is closed.
 *
 * The forms of the page (the order's actions, the dispute's evidence and messages) are regions
 * of that fragment too: one that someone is filling in is left as it is.
 *
 * Forms marked data-submit-once (checkout) disable their buttons once submitted.
 */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form[data-submit-once]")) return;
    if (form.dataset.submitted) {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "true";
    window.setTimeout(function () {
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
        button.insertAdjacentHTML("afterbegin", '<span class="spinner-border spinner-border-sm me-2" aria-hidden="true"></span>');
      });
    }, 0);
  });

  var container = document.querySelector("[data-order-live]");
  if (!container) return;

  var fragmentUrl = container.dataset.fragmentUrl;
  var socketPath = container.dataset.socketPath;
  var note = document.getElementById("live-note");
  var socket = null;
  var pollTimer = null;
  var reconnectTimer = null;
  var reconnects = 0;
  var inFlight = false;
  var again = false;

  function root() {
    return container.querySelector("#order-live-root");
  }

  function settled() {
    var current = root();
    return !current || current.dataset.settled === "true";
  }

  function setMode(mode) {
    container.dataset.live = mode;
    if (!note) return;
    if (settled()) note.textContent = "This order is closed.";
    else if (mode === "socket") note.textContent = "This page updates live.";
    else note.textContent = "This page updates by itself every few seconds.";
  }

  function changed(field) {
    if (field.type === "file") return field.files && field.files.length > 0;
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") {
      var initial = 0; // what the browser shows first when no option is marked selected
      Array.prototype.forEach.call(field.options, function (option, index) {
        if (option.defaultSelected) initial = index;
      });
      return field.selectedIndex !== initial;
    }
    return field.value !== field.defaultValue;
  }

  // A form the user has started to fill in (or a section they opened, or a form shown again after an
  // error with what they typed) is not replaced under them.
  function dirty(section) {
    if (!section) return false;
    if (section.querySelector("details[open], [data-kept-input]")) return true;
    var fields = section.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.type === "hidden") continue;
      if (changed(field)) return true;
      if (document.activeElement === field) return true;
    }
    return false;
  }

  // The regions of the fragment. The order's state and history always follow the order; the
  // others hold forms, and one that someone is filling in stays as it is (with a note if what
  // it offers changed).
  var FOLLOWING = ["#order-state", "#order-history"];
  var FORMS = ["#order-actions", "#dispute-forms"];

  function staleNote(region, where, words) {
    if (region.querySelector("[data-stale]")) return;
    where.insertAdjacentHTML(
      "afterbegin",
      '<div class="alert alert-info small" data-stale role="status">' + words + ' Your text is kept; ' +
        '<a href="">reload the page</a> to see what you can do now.</div>'
    );
  }

  function swap(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    var fresh = template.content.querySelector("#order-live-root");
    var current = root();
    if (!fresh || !current || fresh.dataset.version === current.dataset.version) return;
    var kept = FORMS.filter(function (selector) {
      return dirty(current.querySelector(selector));
    });
    if (!kept.length) {
      current.replaceWith(fresh);
    } else {
      FOLLOWING.concat(FORMS).forEach(function (selector) {
        var mine = current.querySelector(selector);
        var theirs = fresh.querySelector(selector);
        if (!mine || !theirs) return;
        if (kept.indexOf(selector) < 0) {
          mine.replaceWith(theirs);
        } else if (selector === "#order-actions") {
          staleNote(mine, mine.querySelector(".card-body") || mine, "This order changed.");
        } else if (mine.dataset.formsKey !== theirs.dataset.formsKey) {
          staleNote(mine, mine, "The dispute changed.");
        }
      });
      ["version", "status", "pollSeconds", "settled"].forEach(function (key) {
        current.dataset[key] = fresh.dataset[key];
      });
    }
    container.dispatchEvent(new CustomEvent("order:updated", { bubbles: true }));
  }

  function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    fetch(fragmentUrl, { credentials: "same-origin", cache: "no-store", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(swap)
      .catch(function () {
        /* the next message or poll tries again */
      })
      .then(function () {
        inFlight = false;
        if (again) {
          again = false;
          refresh();
        } else if (socket === null) {
          schedulePoll();
        } else if (settled()) {
          setMode(container.dataset.live);
        }
      });
  }

  function schedulePoll() {
    window.clearTimeout(pollTimer);
    pollTimer = null;
    var current = root();
    var seconds = current ? parseInt(current.dataset.pollSeconds, 10) : 0;
    if (socket !== null || settled() || !seconds) {
      setMode(container.dataset.live);
      return;
    }
    setMode("polling");
    pollTimer = window.setTimeout(refresh, seconds * 1000);
  }

  function connect() {
    if (!("WebSocket" in window) || !socketPath || settled()) {
      schedulePoll();
      return;
    }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var candidate;
    try {
      candidate = new WebSocket(scheme + window.location.host + socketPath);
    } catch (error) {
      schedulePoll();
      return;
    }
    var openedAt = 0;
    candidate.onopen = function () {
      socket = candidate;
      openedAt = Date.now();
      window.clearTimeout(pollTimer);
      pollTimer = null;
      setMode("socket");
      refresh(); // whatever happened between the page's rendering and now
    };
    candidate.onmessage = function () {
      refresh();
    };
    candidate.onclose = function (event) {
      socket = null;
      setMode("polling");
      if (!pollTimer && !inFlight) schedulePoll(); // a poll already on its way keeps its time
      // 4401/4403: not signed in / not a participant: polling only. Otherwise reconnect, backing
      // off while the sockets keep failing (a socket that lived a while resets the count).
      reconnects = openedAt && Date.now() - openedAt > 10000 ? 0 : reconnects + 1;
      if (event.code !== 4401 && event.code !== 4403 && reconnects <= 5 && !settled()) {
        window.clearTimeout(reconnectTimer);
        reconnectTimer = window.setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, reconnects)));
      }
    };
  }

  connect();
})();
