// Every command module, in the order --help lists them.
import type { CommandModule } from 'yargs';
import type { System } from '../system.js';
import { flowsCommand } from './flows.js';

export type CommandFactory = (system: System) => CommandModule<any, any>;

export const commands: CommandFactory[] = [flowsCommand];
