// The controller's JSON API, with the token the user signed in with: the
// same endpoints and permissions as phoenixctl. A 401 anywhere signs out.

const TOKEN = "phoenix.token";
const AUTHOR = "phoenix.author";

export const token = () => sessionStorage.getItem(TOKEN);
export const author = () => sessionStorage.getItem(AUTHOR) || "dashboard";

export function signIn(t, who) {
  sessionStorage.setItem(TOKEN, t);
  if (who) sessionStorage.setItem(AUTHOR, who);
  else sessionStorage.removeItem(AUTHOR);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
}

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The controller answers 401 to this token: everyone goes to sign-in. */
function unauthorized() {
  signOut();
  window.dispatchEvent(new CustomEvent("phoenix:unauthorized"));
}

async function call(method, path, body, tok) {
  const headers = { Authorization: "Bearer " + tok, Accept: "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new ApiError(0, null, "The controller does not answer (" + (e.message || e) + ")");
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    const message = (data && data.error) || `HTTP ${r.status}`;
    throw new ApiError(r.status, data, message);
  }
  return data;
}

export async function api(method, path, body) {
  try {
    return await call(method, path, body, token() || "");
  } catch (e) {
    if (e.status === 401) unauthorized();
    throw e;
  }
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});

/** Check a token before keeping it (sign-in). */
export async function checkToken(t) {
  await call("GET", "/agents?status=online", undefined, t);
}

export const enc = encodeURIComponent;
