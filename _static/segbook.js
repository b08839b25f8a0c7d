/* segbook: make the visible menu and contents buttons work (loaded through _config.yml).
 *
 * With pydata-sphinx-theme 0.17.1 and sphinx-book-theme 1.3.0 (pydata-sphinx-theme issue #2451)
 * a page has two ".primary-toggle" buttons (and two ".secondary-toggle"): one in pydata's own
 * header, which the book theme hides, and the book theme's in the article header, which is the one
 * a reader sees. Both themes wire up only document.querySelector(".primary-toggle"), the first
 * and hidden one, so tapping the visible button shows a tooltip and nothing else; on a phone the
 * site navigation and the page contents cannot be opened.
 *
 * The fix: a click on any other toggle of the same kind is handed to the wired one, which then does
 * what the themes intend (a drawer on narrow screens, collapsing the sidebar on wide ones).
 * Harmless when a later theme release fixes the pairing: a single button is left alone.
 */
(function () {
  "use strict";

  function forwardToggles(kind) {
    const buttons = Array.from(document.querySelectorAll("." + kind));
    if (buttons.length < 2) return;
    const wired = buttons[0];
    buttons.slice(1).forEach((button) => {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        button.blur(); // dismiss the button's tooltip
        const tip = window.bootstrap && window.bootstrap.Tooltip && window.bootstrap.Tooltip.getInstance(button);
        if (tip) tip.hide();
        wired.click();
      });
      button.dataset.segbookForwarded = "true"; // the browser test checks the shim is in place
    });
  }

  function init() {
    forwardToggles("primary-toggle");
    forwardToggles("secondary-toggle");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
