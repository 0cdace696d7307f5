// errors.h — the thread-local last-error message behind sa_last_error(), and helpers that set it.
#pragma once
#include <string>
#include "stepaudio_native.h"

namespace sa {
void set_last_error(const std::string &message);
// Set the message and return the status, so a check reads `return fail(SA_E_INVALID_ARGUMENT, "...")`.
sa_status fail(sa_status status, const std::string &message);
}  // namespace sa

// Wrap the body of every exported function: no C++ exception crosses the C ABI.
#define SA_GUARD_BEGIN try {
#define SA_GUARD_END                                                        \
    }                                                                       \
    catch (const std::bad_alloc &) {                                        \
        return sa::fail(SA_E_OUT_OF_MEMORY, "host out of memory");          \
    }                                                                       \
    catch (const std::exception &e) {                                       \
        return sa::fail(SA_E_INTERNAL, std::string("internal error: ") + e.what()); \
    }
