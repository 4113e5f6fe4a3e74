// Nazaha console: small progressive enhancements only; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // "Select all" for bulk actions in the inbox.
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=case]").forEach(function (box) { box.checked = all.checked; });
    });
  }
  // Buttons that ask before acting (data-confirm holds the translated question).
  document.querySelectorAll("[data-confirm]").forEach(function (el) {
    el.addEventListener("click", function (event) {
      if (!window.confirm(el.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // A list wider than its box on a narrow screen (.table-scroll): say that it scrolls
  // sideways (the hint just before the box), for as long as it is wider.
  var boxes = document.querySelectorAll(".table-scroll");
  var markWide = function () {
    boxes.forEach(function (box) {
      var wide = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("overflowing", wide);
      var hint = box.previousElementSibling;
      if (hint && hint.classList.contains("scroll-hint")) { hint.hidden = !wide; }
    });
  };
  if (boxes.length) {
    markWide();
    window.addEventListener("resize", markWide);
    if (window.ResizeObserver) {  // fonts arriving late, a rotated phone
      var observer = new ResizeObserver(markWide);
      boxes.forEach(function (box) { observer.observe(box); if (box.firstElementChild) { observer.observe(box.firstElementChild); } });
    }
  }
  // A reply template fills the reply box.
  var picker = document.getElementById("template-picker");
  var reply = document.getElementById("reply-body");
  if (picker && reply) {
    picker.addEventListener("change", function () {
      var option = picker.options[picker.selectedIndex];
      if (option && option.dataset.body !== undefined) { reply.value = option.dataset.body; }
    });
  }
});
