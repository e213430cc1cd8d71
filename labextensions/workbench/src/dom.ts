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

/** An element that tests and styles find by `data-field`. */
export function field<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  name: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = el(tag, className, text);
  node.dataset.field = name;
  return node;
}

/** A state's badge: its text, with `data-state` for its colour. */
export function stateBadge(className: string, state: string): HTMLElement {
  const node = field('span', className, 'state', state);
  node.dataset.state = state;
  return node;
}

/** The text of an error box: shown with a message, hidden without. */
export function showError(node: HTMLElement, message: string): void {
  node.textContent = message;
  node.hidden = !message;
}

/** Rows of a facts table, each `data-fact` its name in lower case. */
export function factRows(facts: [string, string][]): HTMLElement[] {
  return facts.map(([name, value]) => {
    const row = el('tr');
    row.dataset.fact = name.toLowerCase();
    row.append(el('th', '', name), el('td', '', value));
    return row;
  });
}

/** Whether a select offers these values, in this order (so it need not be rebuilt). */
export function hasOptions(
  select: HTMLSelectElement,
  values: string[]
): boolean {
  return (
    Array.from(select.options)
      .map(o => o.value)
      .join() === values.join()
  );
}

/** Newest first, by `created`. */
export function byNewest(
  a: { created?: string },
  b: { created?: string }
): number {
  return (b.created || '').localeCompare(a.created || '');
}

/** A whole number of at least `min` from a field's text, or an error naming the field. */
export function wholeNumber(raw: string, label: string, min: number): number {
  const value = Number(raw.trim());
  if (!raw.trim() || !Number.isInteger(value) || value < min) {
    throw new Error(`${label}: give a whole number of at least ${min}.`);
  }
  return value;
}
