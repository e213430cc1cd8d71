/** The flavor model of the platform API. */
export interface IFlavor {
  name: string;
  description?: string;
  cpu?: number;
  memory?: number;
  memory_display?: string;
  gpu?: number;
  gpu_type?: string;
}

/** GET workbench/instance. */
export interface IInstance {
  name: string;
  owner: string;
  description: string;
  image: string;
  flavor: string;
  flavor_details: IFlavor | null;
  state: string;
  started: string | null;
  uptime_seconds: number | null;
  storage_gib: number | null;
  storage: {
    path: string;
    total?: number;
    used?: number;
    free?: number;
    percent?: number | null;
    // from 90 % full: what to do
    warning?: string | null;
    // whether the platform holds the instance to its size (null: the cluster decides)
    enforced?: boolean | null;
    note?: string;
    error?: string;
  };
}

/** GET workbench/usage. */
export interface IUsage {
  cpu: { used: number | null; limit: number; percent: number | null };
  memory: { used: number | null; limit: number; percent: number | null };
}

/** The platform's saved image model (the part the panel shows). */
export interface ISavedImage {
  name: string;
  image_name: string;
  tag: string;
  ref: string;
  state: 'saving' | 'ready' | 'failed';
  error?: string | null;
}

/** GET/POST workbench/save: the platform's save status. */
export interface ISaveStatus {
  available: boolean;
  reason?: string;
  state?: 'saving' | 'done' | 'failed' | null;
  step?: string;
  progress?: number;
  message?: string;
  image?: ISavedImage;
}

/** GET workbench/ssh. */
export interface ISSHDetails {
  available: boolean;
  reason?: string;
  enabled?: boolean;
  allowlist?: string[];
  host?: string;
  port?: number;
  username?: string;
  command?: string;
  config?: string;
}

/** Bytes as GiB or MiB. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return '?';
  }
  if (bytes >= 1 << 30) {
    return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
  }
  return `${Math.round(bytes / (1 << 20))} MiB`;
}

/** Seconds as "2 h 5 min". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '-';
  }
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (h > 0) {
    return `${h} h ${m} min`;
  }
  return m > 0 ? `${m} min` : `${seconds} s`;
}

/** A flavor in one line: "cpu.small (2 vCPU, 4 GiB)". */
export function describeFlavor(flavor: IFlavor): string {
  const parts: string[] = [];
  if (flavor.cpu !== undefined) {
    parts.push(`${flavor.cpu} vCPU`);
  }
  if (flavor.memory_display) {
    parts.push(flavor.memory_display);
  }
  if (flavor.gpu) {
    parts.push(
      `${flavor.gpu} GPU${flavor.gpu_type ? ' ' + flavor.gpu_type : ''}`
    );
  }
  return parts.length ? `${flavor.name} (${parts.join(', ')})` : flavor.name;
}
