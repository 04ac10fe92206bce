// Every command module, in the order --help lists them.
import type { CommandModule } from 'yargs';
import type { System } from '../system.js';
import { doctorCommand } from './doctor.js';
import { flowsCommand } from './flows.js';
import { statesCommand } from './states.js';
import { topCommand } from './top.js';
import { serveCommand } from './serve.js';
import { recordCommand } from './record.js';
import { collectCommand } from './collect.js';
import { reportCommand } from './report.js';

export type CommandFactory = (system: System) => CommandModule<any, any>;

export const commands: CommandFactory[] = [topCommand, statesCommand, flowsCommand, doctorCommand, serveCommand, recordCommand, collectCommand, reportCommand];
