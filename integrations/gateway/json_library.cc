// Boost.JSON's compiled part, built into the gateway from its headers:
// Debian 12 ships Boost.JSON 1.81 without a libboost_json library.
#include <boost/json/src.hpp>
