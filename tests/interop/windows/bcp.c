/* A stand-in bcryptprimitives.dll for running the Windows binary under Wine 8, which
 * lacks it: Rust's std (1.78 and later) imports ProcessPrng from it, and without it
 * the program does not start ("Library bcryptprimitives.dll ... not found", status 53).
 * Tests only: real Windows has the DLL. run.sh builds it and puts it next to the .exe:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcp.c -ladvapi32
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
