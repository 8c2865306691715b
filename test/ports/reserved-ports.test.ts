import { describe, expect, it } from 'vitest';
import {
  parseLinuxReservedPorts,
  parseNetshExcludedPorts,
  readReservedPorts,
  type ReservedPortSources,
} from '../../src/ports/reserved-ports.js';

// Real `netsh interface ipv4 show excludedportrange protocol=tcp` output of a Windows 10
// machine with Hyper-V, as posted in the Stack Overflow question "What is Administered port
// exclusions in windows 10?" (copied at developerload.com/what-is-administered-port-exclusions-in-windows-10),
// with the CRLF line ends the console writes. CI is Linux, so the text is what is tested.
const NETSH_HYPER_V = [
  '',
  'Protocol tcp Port Exclusion Ranges',
  '',
  'Start Port    End Port',
  '----------    --------',
  '      5357        5357',
  '      9800        9800',
  '      9801        9801',
  '     49671       49770',
  '     49871       49970',
  '     50000       50059     *',
  '     61117       61216',
  '     61220       61319',
  '     61902       62001',
  '',
  '* - Administered port exclusions.',
  '',
].join('\r\n');

// The same command on a machine with no exclusions: only the headings.
const NETSH_EMPTY = [
  '',
  'Protocol tcp Port Exclusion Ranges',
  '',
  'Start Port    End Port',
  '----------    --------',
  '',
  '* - Administered port exclusions.',
  '',
].join('\r\n');

function sources(overrides: Partial<ReservedPortSources>): ReservedPortSources {
  return {
    platform: 'linux',
    readFile: () => {
      throw new Error('readFile must not be called');
    },
    netsh: () => {
      throw new Error('netsh must not be called');
    },
    ...overrides,
  };
}

describe('reserved ports', () => {
  it('parses the excluded port ranges netsh prints, administered ones included, headings passed over', () => {
    expect(parseNetshExcludedPorts(NETSH_HYPER_V)).toEqual([
      [5357, 5357],
      [9800, 9801],
      [49671, 49770],
      [49871, 49970],
      [50000, 50059],
      [61117, 61216],
      [61220, 61319],
      [61902, 62001],
    ]);
    expect(parseNetshExcludedPorts(NETSH_EMPTY)).toEqual([]);
    // Headings in another language, LF line ends, nonsense rows: only number pairs count.
    expect(
      parseNetshExcludedPorts(
        'Protokoll tcp Portausschlussbereiche\n\nStartport    Endport\n     1000  1099\n  5 x\n 70000 70001\n 20 10\n',
      ),
    ).toEqual([[1000, 1099]]);
  });

  it("parses Linux's ip_local_reserved_ports", () => {
    expect(parseLinuxReservedPorts('\n')).toEqual([]);
    expect(parseLinuxReservedPorts('8080,9000-9100,9101\n')).toEqual([
      [8080, 8080],
      [9000, 9101],
    ]);
    expect(parseLinuxReservedPorts('x,70000,5-3,443')).toEqual([[443, 443]]);
  });

  it('reads /proc on Linux and netsh on Windows only, and nothing elsewhere', () => {
    expect(readReservedPorts(sources({ readFile: () => '8080\n' }))).toEqual({ ranges: [[8080, 8080]], source: 'ip_local_reserved_ports' });
    expect(readReservedPorts(sources({ platform: 'win32', netsh: () => NETSH_HYPER_V })).ranges).toHaveLength(8);
    expect(readReservedPorts(sources({ platform: 'win32', netsh: () => NETSH_HYPER_V })).source).toBe('Windows excluded port ranges');
    expect(readReservedPorts(sources({ platform: 'darwin' })).ranges).toEqual([]);
  });

  it('treats an unreadable list as no reserved ports (the bind probe still decides)', () => {
    const failing = (): string => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    expect(readReservedPorts(sources({ readFile: failing })).ranges).toEqual([]);
    expect(readReservedPorts(sources({ platform: 'win32', netsh: failing })).ranges).toEqual([]);
  });
});
