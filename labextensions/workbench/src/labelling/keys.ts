/** The labelling view's keyboard map: key names, the label of a key, and the help's lines. */

import { ILabel } from './model';

/** What the keys every dataset type shares do. */
export type CommonAction =
  'next' | 'previous' | 'accept' | 'clear' | 'undo' | 'help';

/**
 * The key of an event with its modifiers: "n", "?", "Enter", "Shift+ArrowRight",
 * "Alt+Shift+ArrowLeft", "Ctrl+z". Shift is named with named keys and with Ctrl or Alt only
 * (a typed character carries it already: "?" and "N" are "?" and "n").
 */
export function keyName(event: KeyboardEvent): string {
  let key = event.key;
  if (key === 'Spacebar') {
    key = ' ';
  }
  const named = key.length > 1;
  const parts: string[] = [];
  if (event.ctrlKey || event.metaKey) {
    parts.push('Ctrl');
  }
  if (event.altKey) {
    parts.push('Alt');
    // Alt with a letter types another character on some layouts: its key is what counts
    if (!named && /^Key[A-Z]$/.test(event.code)) {
      key = event.code.slice(3);
    }
  }
  if (event.shiftKey && (named || parts.length > 0)) {
    parts.push('Shift');
  }
  parts.push(named ? key : key.toLowerCase());
  return parts.join('+');
}

/** The label a key gives: the label's own key, else 1-9 for the first nine labels. */
export function labelForKey(labels: ILabel[], key: string): ILabel | null {
  if (key.length !== 1) {
    return null;
  }
  const own = labels.find(l => (l.key || '').toLowerCase() === key);
  if (own) {
    return own;
  }
  if (/^[1-9]$/.test(key)) {
    return labels[Number(key) - 1] ?? null;
  }
  return null;
}

const COMMON: Record<string, CommonAction> = {
  ArrowRight: 'next',
  ArrowDown: 'next',
  j: 'next',
  ArrowLeft: 'previous',
  ArrowUp: 'previous',
  k: 'previous',
  Enter: 'accept',
  Backspace: 'clear',
  'Ctrl+z': 'undo',
  '?': 'help'
};

/** What a key does in every type (after the editor and the label keys had it). */
export function commonAction(key: string): CommonAction | null {
  return COMMON[key] ?? null;
}

/** The help's lines for all types: [keys, what they do]. */
export const COMMON_HELP: [string, string][] = [
  ['→ ↓ J', 'next sample'],
  ['← ↑ K', 'previous sample'],
  ['1–9 or a label’s key', 'label (see the labels above)'],
  ['Enter', 'accept the pre-label, or go on to the next sample'],
  ['Backspace', 'clear the sample’s labels'],
  ['Ctrl+Z', 'undo the last change (it is saved too)'],
  ['?', 'show or hide this help'],
  ['Esc', 'close this help']
];
