// @ts-check
// Sign-in with an API token (the controller's --api-token, or one of its
// --auth-file). The token is checked with GET /whoami before it is kept,
// and kept in this tab only (sessionStorage).

import { checkToken, signIn } from "/ui/api.js";
import { h, replace } from "/ui/dom.js";

/**
 * @param {HTMLElement} root
 * @param {(string | undefined)[]} params why the user is here (signed out, refused)
 * @param {import("/ui/app.js").Ctx} ctx
 */
export function mount(root, [message], ctx) {
  const tokenInput = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "current-password",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-hint signin-error",
  });
  const who = h("input", {
    id: "author",
    name: "author",
    type: "text",
    autocomplete: "username",
    placeholder: "dashboard",
    maxlength: "128",
    "aria-describedby": "author-hint",
  });
  const error = h("p", { class: "field-error", id: "signin-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary", id: "signin" }, "Sign in");
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (e) => {
        e.preventDefault();
        const t = tokenInput.value.trim();
        if (!t) {
          error.textContent = "Enter the API token.";
          tokenInput.setAttribute("aria-invalid", "true");
          tokenInput.focus();
          return;
        }
        button.disabled = true;
        error.textContent = "";
        try {
          const principal = await checkToken(t);
          signIn(t, who.value.trim());
          ctx.signedIn(principal);
        } catch (err) {
          tokenInput.setAttribute("aria-invalid", "true");
          error.textContent =
            err.status === 401
              ? "The controller refused this token. It is the controller's --api-token (or PHOENIX_API_TOKEN), or one given to you from its --auth-file."
              : err.message;
          tokenInput.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    message ? h("p", { class: "muted", role: "status" }, message) : null,
    h(
      "div",
      { class: "field" },
      h("label", { for: "token" }, "API token"),
      tokenInput,
      h(
        "span",
        { class: "hint", id: "token-hint" },
        "The controller's --api-token (PHOENIX_API_TOKEN), or your own from its --auth-file: its role decides what you may do. It stays in this browser tab and is sent only to this controller's API, the one phoenixctl uses.",
      ),
      error,
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "author" }, "Your name ", h("span", { class: "hint" }, "(optional)")),
      who,
      h("span", { class: "hint", id: "author-hint" }, "Kept in the audit log as a note on what you create, promote or roll back (the actor is whom the token signs in as)."),
    ),
    button,
  );
  replace(
    root,
    h(
      "section",
      { class: "signin-wrap" },
      h("div", { class: "brand-big" }, h("img", { src: "/ui/icon.svg", alt: "" }), h("h1", null, "Phoenix")),
      form,
    ),
  );
  setTimeout(() => tokenInput.focus(), 0);
  return {};
}
