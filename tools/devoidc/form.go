package devoidc

import "html/template"

// formTmpl is the sign-in page: any e-mail and name are accepted, because
// this provider exists to let developers and tests be anyone.
var formTmpl = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>devoidc — sign in</title>
<style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto}label{display:block;margin:.8rem 0}input[type=email],input[type=text]{width:100%;padding:.4rem}</style>
</head><body>
<h1>Development sign-in</h1>
<p>This is a local test provider: type any e-mail to sign in as that person.</p>
<form method="post" action="authorize">
<input type="hidden" name="response_type" value="{{.ResponseType}}">
<input type="hidden" name="client_id" value="{{.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.RedirectURI}}">
<input type="hidden" name="scope" value="{{.Scope}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="nonce" value="{{.Nonce}}">
<input type="hidden" name="code_challenge" value="{{.Challenge}}">
<input type="hidden" name="code_challenge_method" value="{{.ChallengeMethod}}">
<label>E-mail <input type="email" name="email" id="email" required value="{{.LoginHint}}" placeholder="someone@example.com" autofocus></label>
<label>Name <input type="text" name="name" id="name" placeholder="optional"></label>
<label><input type="checkbox" name="email_unverified" value="1"> pretend the e-mail is not verified</label>
<button type="submit" id="signin">Sign in</button>
</form>
</body></html>
`))
