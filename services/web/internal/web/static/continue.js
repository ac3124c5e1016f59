// Sends the page's form at once: session changes are POSTs from this site,
// which a page elsewhere (or an image in an article) cannot make a browser send.
for (const f of document.querySelectorAll("form[data-autosubmit]")) f.submit();
// Follows the page's link at once: the way on to the sign-in provider, which
// the CSP's form-action keeps a form (and its redirects) from reaching.
for (const a of document.querySelectorAll("a[data-autofollow]")) location.assign(a.href);
