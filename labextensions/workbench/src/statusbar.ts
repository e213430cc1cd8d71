import { Widget } from '@lumino/widgets';

import { formatBytes } from './models';
import { percent, UsagePoller } from './usage';

/** Status bar item: CPU and memory use against the flavor's limits. */
export class UsageStatus extends Widget {
  constructor(poller: UsagePoller) {
    super();
    this.id = 'jp-workbench-status';
    this.addClass('jp-Workbench-status');
    this.node.textContent = 'CPU … · Mem …';
    this.node.title = 'CPU and memory use of this instance against its flavor';
    poller.changed.connect((_, usage) => {
      if (!usage) {
        this.node.textContent = 'CPU ? · Mem ?';
        return;
      }
      this.node.textContent =
        `CPU ${percent(usage.cpu.percent)} of ${usage.cpu.limit} vCPU · ` +
        `Mem ${formatBytes(usage.memory.used)} / ${formatBytes(usage.memory.limit)}`;
    });
  }
}
