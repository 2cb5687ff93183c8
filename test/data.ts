/**
 * Where the tests find NuAppFirewall's real files: ../shared/data/nuappfirewall beside the clone (as
 * CI has it), or $TOLLGATE_NUAPP_DATA. Without them, the tests that read them print one SKIP line.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const DATA = process.env.TOLLGATE_NUAPP_DATA ?? join(import.meta.dirname, '../../../shared/data/nuappfirewall');
export const NO_DATA: string | false = existsSync(DATA) ? false
  : `NuAppFirewall's data files are not at ${DATA}: clone Tollgate beside ../shared, or set TOLLGATE_NUAPP_DATA`;
if (NO_DATA) console.log(`SKIP tests on real NuAppFirewall files: ${NO_DATA}`);
