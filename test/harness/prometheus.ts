// Reading Prometheus for tests: a scrape's samples (the text exposition format), and the metric
// names a Grafana dashboard's PromQL queries use.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a scrape in the text exposition format; comments and blank lines skipped. */
export function parseScrape(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[label[1]!] = label[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** Every `expr` of the dashboard's panels (rows' nested panels too). */
export function dashboardQueries(dashboard: unknown): string[] {
  const found: string[] = [];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node !== null && typeof node === 'object') {
      for (const [key, child] of Object.entries(node)) {
        if (key === 'expr' && typeof child === 'string') found.push(child);
        else visit(child);
      }
    }
  };
  visit((dashboard as { panels?: unknown }).panels);
  return found;
}

const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/**
 * The metric names in PromQL queries: what is left once strings, label matchers, durations,
 * grouping clauses, function names, keywords and numbers are taken out.
 */
export function promqlMetricNames(query: string): string[] {
  const stripped = query
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+|\$\{[^}]*\}/g, ' ');
  const names: string[] = [];
  // A number or duration (0.95, 1e3, 5m) is one token, so none of its letters reads as a name.
  for (const match of stripped.matchAll(/\d[\w.]*|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const word = match[1];
    if (word === undefined || match[2] !== undefined) continue; // a number, or a function
    if (PROMQL_WORDS.has(word.toLowerCase())) continue;
    names.push(word);
  }
  return names;
}

/** The metrics the dashboard's variables read their values from (`label_values(metric, label)`). */
export function dashboardVariableMetrics(dashboard: unknown): string[] {
  const list = (dashboard as { templating?: { list?: Array<{ definition?: string; query?: unknown }> } })
    .templating?.list;
  return (list ?? []).flatMap((variable) =>
    [
      ...`${variable.definition ?? ''} ${typeof variable.query === 'string' ? variable.query : ''}`.matchAll(
        /label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/g,
      ),
    ].map((match) => match[1]!),
  );
}

export function dashboardMetricNames(dashboard: unknown): Set<string> {
  return new Set([
    ...dashboardQueries(dashboard).flatMap(promqlMetricNames),
    ...dashboardVariableMetrics(dashboard),
  ]);
}
