// For the container's runtime stage only: rewrites ./package.json so that
// `npm ci --omit=dev` installs what the server needs to run.
//
// Why: Nest (and reflect-metadata, rxjs) are peerDependencies of the package, so a
// host application brings its own single copy; this repository pins them as
// devDependencies to build and test. npm ci --omit=dev would therefore leave them
// out. Listed here as dependencies at their pinned versions (and devDependencies
// dropped), npm ci still installs exactly the versions of package-lock.json.
const { readFileSync, writeFileSync } = require('node:fs');

const file = process.argv[2] ?? 'package.json';
const pkg = JSON.parse(readFileSync(file, 'utf8'));
for (const name of Object.keys(pkg.peerDependencies ?? {})) {
  const pinned = pkg.devDependencies?.[name];
  if (!pinned) throw new Error(`peer dependency ${name} has no pinned devDependency version`);
  pkg.dependencies = { ...pkg.dependencies, [name]: pinned };
}
delete pkg.peerDependencies;
delete pkg.devDependencies;
delete pkg.scripts; // nothing runs npm scripts in the image
writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
