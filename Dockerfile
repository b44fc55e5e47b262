# RedMessenger server image. Build: docker build -t redmessenger .
# Run:   docker run -e REDIS_URL=redis://redis:6379 -e AUTH_MODE=none -p 8080:8080 redmessenger
# (NODE_ENV=production below makes AUTH_MODE mandatory, on purpose, and LOG_FORMAT json by default.)

# --- build stage: every dependency, compile the client SDK and src/ to dist/ (Lua scripts copied by nest-cli)
FROM node:24-slim AS build
WORKDIR /app
# The client SDK is a workspace: npm ci links it, and `npm run build` builds it first.
COPY package.json package-lock.json ./
COPY client/package.json ./client/
# --ignore-scripts: no dependency needs an install script to build or run (and it skips telemetry postinstalls).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY client ./client
COPY src ./src
RUN npm run build

# --- runtime stage: production dependencies only, as the unprivileged "node" user
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY client/package.json ./client/
COPY scripts/runtime-package.js ./scripts/
# Nest is a peer dependency (pinned as a devDependency here): see scripts/runtime-package.js.
RUN node scripts/runtime-package.js \
 && npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
 && npm cache clean --force
# The SDK's build, which the demo page serves as /demo/client.js.
COPY --from=build /app/client/dist ./client/dist
COPY --from=build /app/dist ./dist
COPY config/.env.example ./config/
USER node
EXPOSE 8080
# Liveness with node itself (the slim image has no curl). Assumes the server listens on
# 127.0.0.1 too, which it does unless HOST names another interface.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health/live', { signal: AbortSignal.timeout(3000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1's only process, so SIGTERM reaches it and the graceful shutdown runs.
CMD ["node", "--max-semi-space-size=32", "dist/main.js"]
