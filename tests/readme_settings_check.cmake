# Fails when the settings table in README.md differs from the output of
# memward-settings --markdown, the table the parser reads.
# Usage: cmake -DTOOL=<memward-settings> -DREADME=<README.md> -P readme_settings_check.cmake
execute_process(COMMAND ${TOOL} --markdown OUTPUT_VARIABLE generated RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${TOOL} --markdown failed with status ${status}")
endif()
file(READ ${README} readme)
string(REGEX MATCH "<!-- settings:begin -->\n(.*)<!-- settings:end -->" section "${readme}")
if(NOT section)
  message(FATAL_ERROR "README.md has no <!-- settings:begin --> ... <!-- settings:end --> section")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL generated)
  message(FATAL_ERROR "README.md's settings table is out of date; replace it with the output of "
                      "'${TOOL} --markdown':\n${generated}")
endif()
message(STATUS "README.md's settings table matches memward-settings")
