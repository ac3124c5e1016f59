// Sends the page's form at once: session changes are POSTs from this site,
// which a page elsewhere (or an image in an article) cannot make a browser send.
for (const f of document.querySelectorAll("form[data-autosubmit]")) f.submit();
