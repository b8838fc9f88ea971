// The console's only script: ask before a form marked data-confirm is sent.
// (A separate file, so the Content-Security-Policy can forbid inline script.)
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
