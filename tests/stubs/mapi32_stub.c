/*
 * A stand-in for Windows' mapi32.dll, built by the tests with the system's C compiler.
 *
 * It declares Simple MAPI's structures with the Windows 64-bit layout spelled in fixed-width types
 * (ULONG = uint32_t, pointers 8 bytes, UTF-16 strings as uint16_t), records every field it receives as one
 * JSON line in the file named by MAPI_STUB_LOG, and returns the code in MAPI_STUB_RC (MAPI_STUB_LOGON_RC for
 * MAPILogon). Strings are written as arrays of code units, so the test sees the exact UTF-16 (or ANSI bytes).
 * Built with -DWITH_UNICODE it exports MAPISendMailW as Windows 8 and later do; without, only MAPISendMail.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef uint32_t ULONG;
typedef uint64_t ULONG_PTR;
typedef ULONG_PTR LHANDLE;

#define MESSAGE_STRUCT(NAME, RECIP, FILEDESC, CHAR)                                                            \
    typedef struct { ULONG ulReserved; ULONG ulRecipClass; CHAR *lpszName; CHAR *lpszAddress; ULONG ulEIDSize; \
                     void *lpEntryID; } RECIP;                                                                 \
    typedef struct { ULONG ulReserved; ULONG flFlags; ULONG nPosition; CHAR *lpszPathName; CHAR *lpszFileName; \
                     void *lpFileType; } FILEDESC;                                                             \
    typedef struct { ULONG ulReserved; CHAR *lpszSubject; CHAR *lpszNoteText; CHAR *lpszMessageType;           \
                     CHAR *lpszDateReceived; CHAR *lpszConversationID; ULONG flFlags; RECIP *lpOriginator;     \
                     ULONG nRecipCount; RECIP *lpRecips; ULONG nFileCount; FILEDESC *lpFiles; } NAME;

MESSAGE_STRUCT(MapiMessageW, MapiRecipDescW, MapiFileDescW, uint16_t)
MESSAGE_STRUCT(MapiMessage, MapiRecipDesc, MapiFileDesc, unsigned char)

_Static_assert(sizeof(MapiMessageW) == 96, "MapiMessageW is 96 bytes on 64-bit Windows");
_Static_assert(sizeof(MapiRecipDescW) == 40, "MapiRecipDescW is 40 bytes on 64-bit Windows");
_Static_assert(sizeof(MapiFileDescW) == 40, "MapiFileDescW is 40 bytes on 64-bit Windows");
_Static_assert(sizeof(MapiMessage) == 96 && sizeof(MapiRecipDesc) == 40 && sizeof(MapiFileDesc) == 40, "ANSI");

static ULONG code_from(const char *name) {
    const char *value = getenv(name);
    return value ? (ULONG)strtoul(value, NULL, 10) : 0;
}

static FILE *open_log(void) {
    const char *path = getenv("MAPI_STUB_LOG");
    return path ? fopen(path, "a") : NULL;
}

__attribute__((unused)) static void units_w(FILE *f, const uint16_t *s) {
    if (!s) { fputs("null", f); return; }
    fputc('[', f);
    for (size_t i = 0; s[i]; i++) fprintf(f, "%s%u", i ? "," : "", s[i]);
    fputc(']', f);
}

static void units_a(FILE *f, const unsigned char *s) {
    if (!s) { fputs("null", f); return; }
    fputc('[', f);
    for (size_t i = 0; s[i]; i++) fprintf(f, "%s%u", i ? "," : "", s[i]);
    fputc(']', f);
}

/* UTF-16 to UTF-8, to open a path on this system as Windows would open the UTF-16 one. */
__attribute__((unused)) static void to_utf8(const uint16_t *s, char *out, size_t size) {
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 5 < size; i++) {
        uint32_t c = s[i];
        if (c >= 0xD800 && c < 0xDC00 && s[i + 1] >= 0xDC00 && s[i + 1] < 0xE000) {
            c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
            i++;
        }
        if (c < 0x80) out[o++] = (char)c;
        else if (c < 0x800) { out[o++] = (char)(0xC0 | c >> 6); out[o++] = (char)(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | c >> 12); out[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | c >> 18); out[o++] = (char)(0x80 | (c >> 12 & 0x3F));
            out[o++] = (char)(0x80 | (c >> 6 & 0x3F)); out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = 0;
}

/* Whether the file can be read now, its size and first bytes (the mail program reads it during the call). */
static void file_facts(FILE *f, const char *path) {
    FILE *in = path ? fopen(path, "rb") : NULL;
    if (!in) { fputs("\"readable\":false", f); return; }
    unsigned char head[5] = {0};
    size_t got = fread(head, 1, sizeof head, in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fclose(in);
    fprintf(f, "\"readable\":true,\"size\":%ld,\"head\":[", size);
    for (size_t i = 0; i < got; i++) fprintf(f, "%s%u", i ? "," : "", head[i]);
    fputc(']', f);
}

#define LAYOUT(f, NAME, RECIP, FILEDESC)                                                                      \
    fprintf(f, "\"sizes\":{\"message\":%zu,\"recip\":%zu,\"file\":%zu},", sizeof(NAME), sizeof(RECIP),         \
            sizeof(FILEDESC));                                                                                 \
    fprintf(f, "\"offsets\":{\"message\":{\"ulReserved\":%zu,\"lpszSubject\":%zu,\"lpszNoteText\":%zu,"        \
               "\"lpszMessageType\":%zu,\"lpszDateReceived\":%zu,\"lpszConversationID\":%zu,\"flFlags\":%zu,"  \
               "\"lpOriginator\":%zu,\"nRecipCount\":%zu,\"lpRecips\":%zu,\"nFileCount\":%zu,\"lpFiles\":%zu},", \
            offsetof(NAME, ulReserved), offsetof(NAME, lpszSubject), offsetof(NAME, lpszNoteText),              \
            offsetof(NAME, lpszMessageType), offsetof(NAME, lpszDateReceived),                                  \
            offsetof(NAME, lpszConversationID), offsetof(NAME, flFlags), offsetof(NAME, lpOriginator),         \
            offsetof(NAME, nRecipCount), offsetof(NAME, lpRecips), offsetof(NAME, nFileCount),                  \
            offsetof(NAME, lpFiles));                                                                          \
    fprintf(f, "\"recip\":{\"ulReserved\":%zu,\"ulRecipClass\":%zu,\"lpszName\":%zu,\"lpszAddress\":%zu,"     \
               "\"ulEIDSize\":%zu,\"lpEntryID\":%zu},",                                                        \
            offsetof(RECIP, ulReserved), offsetof(RECIP, ulRecipClass), offsetof(RECIP, lpszName),              \
            offsetof(RECIP, lpszAddress), offsetof(RECIP, ulEIDSize), offsetof(RECIP, lpEntryID));              \
    fprintf(f, "\"file\":{\"ulReserved\":%zu,\"flFlags\":%zu,\"nPosition\":%zu,\"lpszPathName\":%zu,"          \
               "\"lpszFileName\":%zu,\"lpFileType\":%zu}},",                                                   \
            offsetof(FILEDESC, ulReserved), offsetof(FILEDESC, flFlags), offsetof(FILEDESC, nPosition),         \
            offsetof(FILEDESC, lpszPathName), offsetof(FILEDESC, lpszFileName), offsetof(FILEDESC, lpFileType));

#define RECORD(f, FN, m, UNITS, PATH_OF)                                                                       \
    fprintf(f, "{\"function\":\"%s\",\"session\":%llu,\"ui_param\":%llu,\"flags\":%u,\"reserved\":%u,", FN,    \
            (unsigned long long)session, (unsigned long long)ui_param, flags, reserved);                       \
    fprintf(f, "\"message\":{\"ulReserved\":%u,\"subject\":", m->ulReserved);                                  \
    UNITS(f, m->lpszSubject); fputs(",\"note\":", f); UNITS(f, m->lpszNoteText);                              \
    fputs(",\"message_type\":", f); UNITS(f, m->lpszMessageType);                                             \
    fputs(",\"date_received\":", f); UNITS(f, m->lpszDateReceived);                                           \
    fputs(",\"conversation_id\":", f); UNITS(f, m->lpszConversationID);                                       \
    fprintf(f, ",\"flFlags\":%u,\"originator_null\":%s,\"nRecipCount\":%u,\"nFileCount\":%u},", m->flFlags,    \
            m->lpOriginator ? "false" : "true", m->nRecipCount, m->nFileCount);                                \
    fputs("\"recips\":[", f);                                                                                  \
    for (ULONG i = 0; i < m->nRecipCount; i++) {                                                               \
        fprintf(f, "%s{\"ulReserved\":%u,\"class\":%u,\"name\":", i ? "," : "", m->lpRecips[i].ulReserved,     \
                m->lpRecips[i].ulRecipClass);                                                                  \
        UNITS(f, m->lpRecips[i].lpszName); fputs(",\"address\":", f); UNITS(f, m->lpRecips[i].lpszAddress);    \
        fprintf(f, ",\"eid_size\":%u,\"entry_null\":%s}", m->lpRecips[i].ulEIDSize,                            \
                m->lpRecips[i].lpEntryID ? "false" : "true");                                                  \
    }                                                                                                          \
    fputs("],\"files\":[", f);                                                                                 \
    for (ULONG i = 0; i < m->nFileCount; i++) {                                                                \
        fprintf(f, "%s{\"ulReserved\":%u,\"flFlags\":%u,\"nPosition\":%u,\"path\":", i ? "," : "",             \
                m->lpFiles[i].ulReserved, m->lpFiles[i].flFlags, m->lpFiles[i].nPosition);                     \
        UNITS(f, m->lpFiles[i].lpszPathName); fputs(",\"name\":", f); UNITS(f, m->lpFiles[i].lpszFileName);   \
        fprintf(f, ",\"type_null\":%s,", m->lpFiles[i].lpFileType ? "false" : "true");                         \
        PATH_OF(f, m->lpFiles[i].lpszPathName);                                                                \
        fputc('}', f);                                                                                         \
    }                                                                                                          \
    fputs("],", f);

__attribute__((unused)) static void facts_w(FILE *f, const uint16_t *path) {
    char utf8[4096];
    if (!path) { file_facts(f, NULL); return; }
    to_utf8(path, utf8, sizeof utf8);
    file_facts(f, utf8);
}

static void facts_a(FILE *f, const unsigned char *path) { file_facts(f, (const char *)path); }

#ifdef WITH_UNICODE
ULONG MAPISendMailW(LHANDLE session, ULONG_PTR ui_param, MapiMessageW *m, ULONG flags, ULONG reserved) {
    FILE *f = open_log();
    if (f) {
        RECORD(f, "MAPISendMailW", m, units_w, facts_w)
        LAYOUT(f, MapiMessageW, MapiRecipDescW, MapiFileDescW)
        fprintf(f, "\"code\":%u}\n", code_from("MAPI_STUB_RC"));
        fclose(f);
    }
    return code_from("MAPI_STUB_RC");
}
#endif

ULONG MAPISendMail(LHANDLE session, ULONG_PTR ui_param, MapiMessage *m, ULONG flags, ULONG reserved) {
    FILE *f = open_log();
    if (f) {
        RECORD(f, "MAPISendMail", m, units_a, facts_a)
        LAYOUT(f, MapiMessage, MapiRecipDesc, MapiFileDesc)
        fprintf(f, "\"code\":%u}\n", code_from("MAPI_STUB_RC"));
        fclose(f);
    }
    return code_from("MAPI_STUB_RC");
}

ULONG MAPILogon(ULONG_PTR ui_param, char *profile, char *password, ULONG flags, ULONG reserved, LHANDLE *session) {
    FILE *f = open_log();
    ULONG code = code_from("MAPI_STUB_LOGON_RC");
    if (f) {
        fprintf(f, "{\"function\":\"MAPILogon\",\"ui_param\":%llu,\"profile_null\":%s,\"password_null\":%s,"
                   "\"flags\":%u,\"reserved\":%u,\"code\":%u}\n",
                (unsigned long long)ui_param, profile ? "false" : "true", password ? "false" : "true", flags,
                reserved, code);
        fclose(f);
    }
    if (code == 0) *session = 0x5E55;
    return code;
}

ULONG MAPILogoff(LHANDLE session, ULONG_PTR ui_param, ULONG flags, ULONG reserved) {
    FILE *f = open_log();
    if (f) {
        fprintf(f, "{\"function\":\"MAPILogoff\",\"session\":%llu,\"ui_param\":%llu,\"flags\":%u,\"reserved\":%u}\n",
                (unsigned long long)session, (unsigned long long)ui_param, flags, reserved);
        fclose(f);
    }
    return 0;
}
