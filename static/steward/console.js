/* The build console follower: the page arrives with the tail of the log (rendered by the
   server), then a WebSocket sends what follows from that byte offset, as HTML with ANSI colours.
   The client remembers `next` (and the colour state `sgr`) of the last message and reconnects
   from there, so nothing is missed or shown twice. The DOM is bounded: at most data-max-lines
   lines (and data-max-chars characters) stay in the page; older lines are dropped from the top. */
(function () {
  "use strict";
  var box = document.getElementById("console-log");
  if (!box) return;
  var statusEl = document.getElementById("console-status");
  var maxLines = parseInt(box.getAttribute("data-max-lines"), 10) || 10000;
  var maxChars = parseInt(box.getAttribute("data-max-chars"), 10) || 4000000;
  var wsUrl = box.getAttribute("data-ws-url");
  var fullUrl = box.getAttribute("data-full-url");
  var next = parseInt(box.getAttribute("data-offset"), 10) || 0;
  var sgr = box.getAttribute("data-sgr") || "";
  var SOFT_WRAP = 16384;  // a longer line is continued in a new element, so it can be dropped
  var socket = null, retry = 1000, stopped = false, hiddenNote = null;
  var lineCount = 0, charCount = 0, current = null;

  Array.prototype.forEach.call(box.children, function (line) {
    line._size = line.textContent.length;
    lineCount += 1;
    charCount += line._size;
  });
  if (box.getAttribute("data-open-line") === "1") current = box.lastElementChild;
  trim();

  function nearBottom() {
    var doc = document.scrollingElement || document.documentElement;
    return doc.scrollHeight - doc.scrollTop - window.innerHeight < 80;
  }

  function showHiddenNote() {
    if (hiddenNote) return;
    hiddenNote = document.createElement("div");
    hiddenNote.className = "console-hidden";
    hiddenNote.id = "console-hidden";
    hiddenNote.appendChild(document.createTextNode("… earlier output hidden, see the "));
    var link = document.createElement("a");
    link.href = fullUrl;
    link.textContent = "Full Log";
    hiddenNote.appendChild(link);
    box.insertBefore(hiddenNote, box.firstChild);
  }

  function trim() {
    while ((lineCount > maxLines || charCount > maxChars) && lineCount > 1) {
      var first = hiddenNote ? hiddenNote.nextElementSibling : box.firstElementChild;
      if (!first || first === current) break;
      box.removeChild(first);
      lineCount -= 1;
      charCount -= first._size || 0;
      showHiddenNote();
    }
  }

  function newLine(parent) {
    var line = document.createElement("div");
    line.className = "line";
    line._size = 0;
    parent.appendChild(line);
    lineCount += 1;
    return line;
  }

  function append(html) {
    var follow = nearBottom();
    var fragment = document.createDocumentFragment();
    var parts = html.split("\n");
    for (var i = 0; i < parts.length; i++) {
      if (i > 0) current = null;  // the previous line ended
      if (i === parts.length - 1 && parts[i] === "") break;
      if (!current || current._size > SOFT_WRAP) current = newLine(fragment);
      if (parts[i]) {
        current.insertAdjacentHTML("beforeend", parts[i]);
        current._size += parts[i].length;
        charCount += parts[i].length;
      }
    }
    box.appendChild(fragment);
    trim();
    if (follow) window.scrollTo(0, (document.scrollingElement || document.documentElement).scrollHeight);
  }

  function clear() {
    box.textContent = "";
    hiddenNote = null; current = null; lineCount = 0; charCount = 0;
  }

  function setStatus(text, spinning, result) {
    statusEl.textContent = "";
    statusEl.className = "console-status" + (result ? " finished-" + result : "");
    if (spinning) {
      var spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      statusEl.appendChild(spinner);
    }
    var label = document.createElement("span");
    label.className = "console-status-text";
    label.textContent = text;
    statusEl.appendChild(label);
    statusEl.setAttribute("data-building", spinning ? "1" : "0");
  }

  function buildState(state) {
    if (state.deleted) {
      setStatus("This build has been deleted.", false);
      stopped = true;
      return;
    }
    if (state.building) {
      setStatus(state.status === "pending" ? "Pending" : "In progress", true);
    } else {
      setStatus("Finished: " + (state.result || "NOT_BUILT"), false, state.result);
      var abort = document.getElementById("console-abort");
      if (abort) abort.remove();
      var balls = document.getElementById("result-balls");
      var heading = document.getElementById("console-ball");
      var ball = balls && balls.content.querySelector('[data-result="' + state.result + '"]');
      if (ball && heading) heading.innerHTML = ball.innerHTML;
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + wsUrl + "?offset=" + next + "&sgr=" + encodeURIComponent(sgr);
    var ws = new WebSocket(url);
    socket = ws;
    ws.addEventListener("open", function () {
      retry = 1000;
      document.body.dataset.ws = "open";
    });
    ws.addEventListener("message", function (event) {
      if (socket !== ws) return;
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.reset) { clear(); next = 0; sgr = ""; return; }
      if (data.build) { buildState(data.build); return; }
      if (typeof data.html === "string" && data.html) append(data.html);
      if (typeof data.next === "number") next = data.next;
      if (typeof data.sgr === "string") sgr = data.sgr;
    });
    ws.addEventListener("close", function (event) {
      if (socket !== ws) return;
      socket = null;
      document.body.dataset.ws = "closed";
      if (stopped) return;
      if (event.code === 4403) { setStatus("You may not read this console.", false); return; }
      if (event.code === 4404) { setStatus("No such build.", false); return; }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    });
  }

  // For tests and for the curious: drop the connection; the follower reconnects from `next`.
  window.stewardConsole = {
    reconnect: function () { if (socket) socket.close(); },
    offset: function () { return next; },
    lines: function () { return lineCount; }
  };

  connect();
})();
