// oncal-feed settings page: small enhancements over plain forms, which work without this.
// - copy buttons (navigator.clipboard, falling back to selecting the text);
// - confirmation dialogs on forms marked data-confirm (without JavaScript, the server
//   shows a confirmation page instead);
// - "busy" labels on forms marked data-busy, so a slow sync isn't clicked twice;
// - while a connected calendar waits for its sync, poll the JSON status route and
//   reload when something changed, unless the person is in the middle of a form (then
//   say that there is news instead: a reload would drop what they typed or sent);
// - on the demo calendar page, refresh the calendar every second.
// Served from our own origin; the Content-Security-Policy allows no inline script.
"use strict";

(function () {
  function copyText(input, status) {
    function done(message) {
      if (status) {
        status.textContent = message;
      }
    }
    function fallback() {
      input.focus();
      input.select();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (error) {
        copied = false;
      }
      done(copied ? "Copied." : "Selected: press Ctrl+C (or ⌘C) to copy.");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () {
        done("Copied.");
      }, fallback);
    } else {
      fallback();
    }
  }

  function setUpCopyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input) {
        return;
      }
      button.hidden = false;
      button.addEventListener("click", function () {
        copyText(input, document.getElementById("copy-status"));
      });
      // Selecting everything on focus makes a manual copy one keystroke.
      input.addEventListener("focus", function () {
        input.select();
      });
    });
  }

  function setUpConfirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var question = form.getAttribute("data-confirm");
        var remove = form.querySelector("input[name=events][value=remove]");
        if (remove && remove.checked) {
          question += " The events already written there will be removed.";
        }
        if (!window.confirm(question)) {
          event.preventDefault();
          return;
        }
        var field = form.querySelector("input[name=confirm]");
        if (field) {
          field.value = "yes";
        }
      });
    });
  }

  function setUpBusyForms() {
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var button = form.querySelector("button[type=submit]");
        if (button) {
          button.textContent = form.getAttribute("data-busy");
          button.setAttribute("aria-disabled", "true");
          // Disabled after this turn, so the form is still sent with the click.
          window.setTimeout(function () {
            button.disabled = true;
          }, 0);
        }
      });
    });
  }

  function setUpStatusPolling() {
    var section = document.querySelector("[data-poll]");
    if (!section || !window.fetch) {
      return;
    }
    var url = section.getAttribute("data-poll");
    var rendered = {};
    // Connections by provider; their schedule pushes by "provider/schedule".
    section.querySelectorAll("[data-provider], [data-push]").forEach(function (card) {
      rendered[card.getAttribute("data-provider") || card.getAttribute("data-push")] = {
        status: card.getAttribute("data-status"),
        lastSync: card.getAttribute("data-last-sync"),
      };
    });
    var attempts = 0;
    // A reload while a form is being filled in loses the input; one while a form is being
    // sent cancels the submission (the reload replaces the navigation it started).
    var busyWithForm = false;
    var submitted = false;
    ["input", "change"].forEach(function (kind) {
      document.addEventListener(kind, function () {
        busyWithForm = true;
      });
    });
    document.addEventListener("submit", function (event) {
      if (!event.defaultPrevented) {
        submitted = true;
      }
    });
    function announceNews() {
      var notice = document.createElement("p");
      notice.className = "notice";
      notice.id = "sync-news";
      notice.setAttribute("role", "status");
      notice.appendChild(document.createTextNode("A sync finished. "));
      var link = document.createElement("a");
      link.href = window.location.pathname + "#connections";
      link.textContent = "Reload to see it";
      notice.appendChild(link);
      notice.appendChild(document.createTextNode("."));
      section.insertBefore(notice, section.firstElementChild.nextSibling);
    }
    function changed(connection) {
      return (
        differs(connection.provider, connection) ||
        (connection.schedule_pushes || []).some(function (push) {
          return differs(connection.provider + "/" + push.schedule, push);
        })
      );
    }
    function differs(key, connection) {
      var seen = rendered[key];
      if (!seen) {
        return true;
      }
      var lastSync = connection.last_sync_at ? Date.parse(connection.last_sync_at) : NaN;
      var seenSync = seen.lastSync ? Date.parse(seen.lastSync) : NaN;
      var statusChanged = seen.status !== connection.status;
      var syncChanged = isNaN(lastSync) !== isNaN(seenSync) || (!isNaN(lastSync) && lastSync !== seenSync);
      return statusChanged || syncChanged;
    }
    function poll() {
      attempts += 1;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.ok ? response.json() : null;
        })
        .then(function (body) {
          if (submitted) {
            return;
          }
          if (body && body.connections && body.connections.some(changed)) {
            if (busyWithForm) {
              announceNews();
            } else {
              window.location.reload();
            }
          } else if (attempts < 40) {
            window.setTimeout(poll, 3000);
          }
        })
        .catch(function () {
          if (attempts < 40) {
            window.setTimeout(poll, 3000);
          }
        });
    }
    window.setTimeout(poll, 2000);
  }

  // The demo calendar page: fetch the page again every second and swap in its
  // calendar, so a shift moved through the API shows moved without a reload.
  function setUpCalendarRefresh() {
    var section = document.querySelector("[data-refresh]");
    if (!section || !window.fetch || !window.DOMParser) {
      return;
    }
    var url = section.getAttribute("data-refresh");
    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html) {
            var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(section.id);
            // Compared by the server's digest of the events, not by markup: every
            // render carries fresh CSRF tokens, so the markup always differs.
            var version = fresh && fresh.getAttribute("data-fingerprint");
            if (version && version !== section.getAttribute("data-fingerprint")) {
              section.innerHTML = fresh.innerHTML;
              section.setAttribute("data-fingerprint", version);
            }
          }
        })
        .catch(function () {})
        .then(function () {
          window.setTimeout(refresh, 1000);
        });
    }
    window.setTimeout(refresh, 1000);
  }

  function setUpBrowserZone() {
    var input = document.getElementById("time-zone-input");
    var names = document.getElementById("time-zone-names");
    var hint = document.getElementById("browser-zone");
    if (!input || !names || !hint || !window.Intl) {
      return;
    }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var offered = Array.prototype.some.call(names.options, function (option) {
      return option.value === zone;
    });
    if (!zone || zone === input.value || !offered) {
      return;
    }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.textContent = "Use " + zone;
    button.addEventListener("click", function () {
      input.value = zone;
      input.focus();
    });
    hint.textContent = "Your browser is set to " + zone + ". ";
    hint.appendChild(button);
    hint.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpCopyButtons();
    setUpConfirmations();
    setUpBusyForms();
    setUpStatusPolling();
    setUpCalendarRefresh();
    setUpBrowserZone();
  });
})();
