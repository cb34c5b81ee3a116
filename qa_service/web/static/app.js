// Call page: clicking a criterion or violation highlights its evidence in place (the links also work
// without script: the server marks the same lines). Clicking a time seeks the redacted audio.
(function () {
  "use strict";

  function highlight(attr, value, link) {
    document.querySelectorAll(".seg.hl").forEach(function (el) { el.classList.remove("hl"); });
    document.querySelectorAll("a.crit.active, a.viol.active").forEach(function (el) {
      el.classList.remove("active");
      el.setAttribute("aria-pressed", "false");
    });
    var first = null;
    document.querySelectorAll(".seg[" + attr + "]").forEach(function (el) {
      if (el.getAttribute(attr).split(" ").indexOf(value) >= 0) {
        el.classList.add("hl");
        if (!first) { first = el; }
      }
    });
    link.classList.add("active");
    link.setAttribute("aria-pressed", "true");
    if (first) { first.scrollIntoView({ block: "center", behavior: "smooth" }); }
    if (window.history && history.replaceState) { history.replaceState(null, "", link.getAttribute("href")); }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    var crit = target.closest("a[data-crit]");
    if (crit) {
      event.preventDefault();
      highlight("data-crits", crit.getAttribute("data-crit"), crit);
      return;
    }
    var viol = target.closest("a[data-viol]");
    if (viol) {
      event.preventDefault();
      highlight("data-viols", viol.getAttribute("data-viol"), viol);
      return;
    }
    var seek = target.closest("a[data-seek]");
    var player = document.getElementById("player");
    if (seek && player) {
      event.preventDefault();
      player.currentTime = parseFloat(seek.getAttribute("data-seek")) || 0;
      player.play();
    }
  });
})();
