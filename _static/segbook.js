/* segbook: make the visible menu and contents buttons work, and give too-wide inline maths a
 * scroll box (loaded through _config.yml).
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
 *
 * Tables are numbered per chapter ("Table 2.3"), results tables (notebook outputs) and Markdown
 * tables alike, in page order, as Sphinx numbers the figures: Sphinx numbers only the tables of
 * its own table directive, and the results tables are raw HTML it never sees.
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

  /* MathJax 3 never breaks inline maths across lines. A formula wider than its line
   * ("(H - 1) s - 2p + d (k - 1) + output_padding + 1" on a phone) is marked, and
   * segbook.css gives it a scroll box of its own. Only those: a scroll box sits on the
   * line's baseline differently, which would misalign every short formula. */
  function markWideMath() {
    document.querySelectorAll('mjx-container[jax="CHTML"]:not([display="true"])').forEach((m) => {
      m.classList.remove("segbook-wide-math");
      const line = m.closest("p, li, td, th, dd, dt, figcaption, div") || m.parentElement;
      if (line && m.getBoundingClientRect().width > line.clientWidth + 1) m.classList.add("segbook-wide-math");
    });
  }

  function watchMaths() {
    const mj = window.MathJax;
    if (!mj || !mj.startup || !mj.startup.promise) return;
    mj.startup.promise.then(markWideMath);
    let timer = null;
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(markWideMath, 200);
    });
  }

  function numberTables() {
    const article = document.querySelector("article.bd-article") || document.querySelector("article");
    if (!article) return;
    const num = article.querySelector("h1 .section-number");
    const chapter = num ? num.textContent.trim().replace(/\.$/, "") : "";
    let n = 0;
    article.querySelectorAll("table.segbook-results, table.table").forEach((table) => {
      n += 1;
      const label = "Table " + (chapter ? chapter + "." : "") + n;
      let caption = table.querySelector(":scope > caption");
      if (!caption) {
        caption = document.createElement("caption");
        table.insertBefore(caption, table.firstChild);
      }
      const sphinx = caption.querySelector(".caption-number");  // a {table} directive's own number
      if (sphinx) sphinx.remove();
      const text = caption.textContent.trim();
      const span = document.createElement("span");
      span.className = "segbook-table-number";
      span.textContent = label + (text ? ": " : "");
      caption.insertBefore(span, caption.firstChild);
      table.dataset.segbookNumber = label;  // the browser test reads it
    });
  }

  function init() {
    numberTables();
    forwardToggles("primary-toggle");
    forwardToggles("secondary-toggle");
    watchMaths(); // MathJax is a deferred script: it has run by DOMContentLoaded
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
