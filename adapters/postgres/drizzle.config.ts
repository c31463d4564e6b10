/**
 * drizzle-kit's configuration: generates the SQL migrations in adapters/postgres/migrations from schema.ts
 * (`npm run db:generate`). The sink applies them at start-up with drizzle-orm's migrator; drizzle-kit never
 * touches a database here.
 */
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./adapters/postgres/schema.ts",
  out: "./adapters/postgres/migrations",
});
