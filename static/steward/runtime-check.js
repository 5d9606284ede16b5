/* The runtime check page follows /ws/runtime-check/<id>/: the stored state first ("replay"),
   then each event as the worker pushes it. Loaded at the end of the page, not deferred: the
   check runs in a fraction of a second, so the socket opens as soon as the markup exists. */
(function () {
  "use strict";

  var STATUS = {
    queued: { label: "Queued", icon: "clock", css: "status-queued" },
    running: { label: "Running", icon: "refresh", css: "status-running" },
    done: { label: "Done", icon: "check", css: "status-success" },
    interrupted: { label: "Interrupted", icon: "x", css: "status-failure" }
  };

  // Milliseconds, so that one can see the steps arrive one by one.
  function timestamp() {
    var d = new Date();
    var hms = [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) {
      return String(n).padStart(2, "0");
    }).join(":");
    return hms + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function followRuntimeCheck(panel) {
    var events = document.getElementById("check-events");
    var statusText = document.getElementById("check-status");
    var statusIcon = document.querySelector("#check-status-icon .status-icon");
    var progress = document.getElementById("check-progress");
    var steps = document.getElementById("check-steps");
    var worker = document.getElementById("check-worker");
    var wsState = document.getElementById("ws-state");
    var finished = false;

    function setStatus(status) {
      var info = STATUS[status] || STATUS.queued;
      statusText.textContent = info.label;
      statusText.setAttribute("data-status", status);
      if (statusIcon) {
        statusIcon.className = "status-icon " + info.css;
        statusIcon.title = info.label;
        var use = statusIcon.querySelector("use");
        if (use) {
          var href = use.getAttribute("href");
          use.setAttribute("href", href.slice(0, href.indexOf("#") + 1) + info.icon);
        }
      }
    }

    function addLine(text, kind) {
      var li = document.createElement("li");
      if (kind) li.className = kind;
      li.setAttribute("data-kind", kind || "live");
      var time = document.createElement("span");
      time.className = "time";
      time.textContent = timestamp();
      li.appendChild(time);
      li.appendChild(document.createTextNode(text));
      events.appendChild(li);
      events.scrollTop = events.scrollHeight;
    }

    function setConnection(text, css) {
      wsState.textContent = text;
      wsState.className = css;
    }

    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + panel.getAttribute("data-ws-path"));
    socket.addEventListener("open", function () {
      document.body.dataset.ws = "open";
      setConnection("Open: events arrive as the worker sends them.", "ws-open");
    });
    socket.addEventListener("message", function (message) {
      var data;
      try { data = JSON.parse(message.data); } catch (e) { return; }
      if (data.error) {
        addLine(data.error, "replay");
        return;
      }
      if (data.status) setStatus(data.status);
      if (typeof data.step === "number") {
        progress.max = data.total || progress.max;
        progress.value = data.step;
        steps.textContent = data.step + " / " + (data.total || progress.max);
      }
      if (data.worker) worker.textContent = data.worker;
      var final = data.status === "done" || data.status === "interrupted";
      addLine(data.text || "", data.replay ? "replay" : (final ? "final" : ""));
      if (final) {
        finished = true;
        document.body.dataset.check = data.status;
      }
    });
    socket.addEventListener("close", function () {
      document.body.dataset.ws = "closed";
      setConnection(finished ? "Closed: the check has finished." : "Closed. Reload the page to reconnect.", "ws-closed");
    });
  }

  var panel = document.querySelector("[data-runtime-check]");
  if (panel) followRuntimeCheck(panel);
})();
