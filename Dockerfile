# The worker image for docker-compose.yml: builds the TypeScript and runs the worker process.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the project's `prepare` script builds, and the sources are not here yet; the
# dependencies' own install scripts run with `npm rebuild` once they are.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY . .
# The worker needs the Temporal SDK, which package.json lists as optional peer dependencies (and dev
# dependencies of the checkout) so that an application installing the router does not get it: it is
# made a dependency here before the pruning, which drops what only the tests, the demo and the dev
# stack use (embedded PostgreSQL, Temporal's test server, pino-pretty: the image logs JSON).
RUN npm rebuild && npm run build \
  && node -e "const fs = require('node:fs'); const p = JSON.parse(fs.readFileSync('package.json', 'utf8')); for (const name of Object.keys(p.peerDependencies).filter((name) => name.startsWith('@temporalio/'))) { p.dependencies[name] = p.devDependencies[name]; delete p.devDependencies[name]; } fs.writeFileSync('package.json', JSON.stringify(p, null, 2));" \
  && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production LOG_FORMAT=json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
CMD ["node", "dist/worker/main.js"]
