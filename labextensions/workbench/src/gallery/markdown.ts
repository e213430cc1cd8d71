/**
 * A small, safe Markdown subset for asset descriptions: paragraphs, headings, lists, code
 * (fenced and inline), bold, italics and http(s) links. Everything is built as DOM nodes
 * from text, so nothing in a description can become markup or script.
 */

import { el } from '../dom';

const INLINE =
  /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*|\b_[^_\s][^_]*_\b)|(\[([^\]]+)\]\((https?:\/\/[^)\s]+)\))/;

/** The inline subset of one line of text, appended to `parent`. */
function inline(parent: HTMLElement, text: string): void {
  let rest = text;
  while (rest) {
    const match = INLINE.exec(rest);
    if (!match) {
      parent.append(rest);
      return;
    }
    if (match.index > 0) {
      parent.append(rest.slice(0, match.index));
    }
    const [whole, code, bold, em, link, label, href] = match;
    if (code) {
      parent.append(el('code', '', code.slice(1, -1)));
    } else if (bold) {
      parent.append(el('strong', '', bold.slice(2, -2)));
    } else if (em) {
      parent.append(el('em', '', em.slice(1, -1)));
    } else if (link) {
      const a = el('a', '', label);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      parent.append(a);
    }
    rest = rest.slice(match.index + whole.length);
  }
}

/** The description rendered into a new element of class `className`. */
export function renderMarkdown(text: string, className: string): HTMLElement {
  const root = el('div', className);
  const lines = (text || '').replace(/\r\n?/g, '\n').split('\n');
  let paragraph: string[] = [];
  let list: HTMLElement | null = null;

  const endParagraph = () => {
    if (paragraph.length) {
      const p = el('p');
      paragraph.forEach((line, i) => {
        if (i > 0) {
          p.append(' ');
        }
        inline(p, line);
      });
      root.append(p);
      paragraph = [];
    }
  };
  const endList = () => {
    list = null;
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      endParagraph();
      endList();
      const code: string[] = [];
      for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) {
        code.push(lines[i]);
      }
      const pre = el('pre');
      pre.append(el('code', '', code.join('\n')));
      root.append(pre);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      endParagraph();
      endList();
      const level = Math.min(6, heading[1].length + 2);
      const h = el(`h${level}` as 'h3');
      inline(h, heading[2]);
      root.append(h);
      continue;
    }
    const item = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (item) {
      endParagraph();
      const ordered = /\d/.test(item[1]);
      const tag = ordered ? 'OL' : 'UL';
      if (!list || list.tagName !== tag) {
        list = el(ordered ? 'ol' : 'ul');
        root.append(list);
      }
      const li = el('li');
      inline(li, item[2]);
      list.append(li);
      continue;
    }
    if (!line.trim()) {
      endParagraph();
      endList();
      continue;
    }
    endList();
    paragraph.push(line.trim());
  }
  endParagraph();
  return root;
}
