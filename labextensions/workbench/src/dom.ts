/** Small DOM helpers of the panels' plain-DOM widgets (Training, Deploy). */

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/** A JupyterLab-styled button; `data-action` names it for tests and styles. */
export function button(
  label: string,
  action: string,
  kind = 'accept'
): HTMLButtonElement {
  const node = el('button', `jp-Button jp-mod-styled jp-mod-${kind}`, label);
  node.dataset.action = action;
  node.type = 'button';
  return node;
}

/** "2026-12-02 04:00:05" in local time, or "-". */
export function formatTime(value: string | null | undefined): string {
  if (!value) {
    return '-';
  }
  const date = new Date(value);
  if (isNaN(date.getTime())) {
    return value;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}
