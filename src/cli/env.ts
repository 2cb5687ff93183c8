// Imported first by main.ts: libuv reads this when its thread pool first starts. The agent parks one
// blocking netlink recv per queue there, and /proc scans and SQLite must not wait behind them.
process.env.UV_THREADPOOL_SIZE ??= '16';
